//! The environment of an encoder process, and where the queue URL comes from.
//!
//! # Precedence (lowest to highest)
//!
//! 1. The container's literal `env` entries in the manifest (`value:`); entries with `valueFrom`
//!    are not resolved (no Secrets or ConfigMaps on one machine), and literal paths inside the
//!    container's `volumeMounts` (`WORK_DIR: /scratch`) are left out, as they exist only in the
//!    pod (see [`crate::manifest::JobTemplate::pod_paths`]).
//! 2. The environment of local-scaler itself: a variable set there overrides the manifest's
//!    literal value for the same name, so `AWS_ENDPOINT_URL=http://127.0.0.1:5000 local-scaler
//!    run ...` points every encoder at the emulator although the manifest names the in-cluster
//!    one. Variables only in local-scaler's environment pass through as well (`PATH`, `HOME`,
//!    credentials), as a container would inherit its image's environment.
//! 3. What local-scaler sets itself: `QUEUE_URL` (and the `queueURLFromEnv` variable, when it has
//!    another name) = the queue local-scaler watches, so the scaler and its Jobs can never look at
//!    different queues; and `HOSTNAME` = the Job's process name, as Kubernetes sets it to the
//!    pod's name.
//!
//! Only variable *names* are logged, never values: they may hold secrets.

use std::collections::BTreeMap;

use crate::manifest::SqsTrigger;

/// The full environment for an encoder process, and how it was put together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobEnvironment {
    /// Every variable the process gets (its environment is cleared first).
    pub vars: BTreeMap<String, String>,
    /// Manifest variables whose literal value lost to local-scaler's environment.
    pub overridden_by_process: Vec<String>,
    /// Manifest variables used as written.
    pub from_manifest: Vec<String>,
}

/// Merges the three layers described in the module documentation.
#[must_use]
pub fn job_environment(
    process: &BTreeMap<String, String>,
    manifest: &[(String, String)],
    forced: &[(String, String)],
) -> JobEnvironment {
    let mut env = JobEnvironment {
        vars: process.clone(),
        ..JobEnvironment::default()
    };
    // A name repeated in the manifest: the last entry wins, as in a container.
    let mut literal = BTreeMap::new();
    for (name, value) in manifest {
        literal.insert(name.as_str(), value.as_str());
    }
    for (name, value) in literal {
        if process.contains_key(name) {
            env.overridden_by_process.push(name.to_owned());
        } else {
            env.vars.insert(name.to_owned(), value.to_owned());
            env.from_manifest.push(name.to_owned());
        }
    }
    for (name, value) in forced {
        env.vars.insert(name.clone(), value.clone());
    }
    env
}

/// Where the queue URL was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueUrlSource {
    /// `--queue-url`, or `QUEUE_URL` in local-scaler's environment.
    FlagOrEnv,
    /// The trigger's `queueURL`.
    TriggerQueueUrl,
    /// The trigger's `queueURLFromEnv`, looked up in the Job's environment.
    TriggerQueueUrlFromEnv,
}

/// Finds the queue to watch: `--queue-url`/`QUEUE_URL` first (the contract's source, and how the
/// demo points at the emulator), then the trigger's `queueURL` (KEDA prefers it over
/// `queueURLFromEnv`), then the variable named by `queueURLFromEnv` in local-scaler's environment
/// or, failing that, in the manifest's literal env.
///
/// # Errors
///
/// A message naming every place looked at when none holds a URL.
pub fn resolve_queue_url(
    flag_or_env: Option<&str>,
    trigger: &SqsTrigger,
    process: &BTreeMap<String, String>,
    manifest: &[(String, String)],
) -> Result<(String, QueueUrlSource), String> {
    if let Some(url) = flag_or_env.filter(|u| !u.is_empty()) {
        return Ok((url.to_owned(), QueueUrlSource::FlagOrEnv));
    }
    if let Some(url) = &trigger.queue_url {
        return Ok((url.clone(), QueueUrlSource::TriggerQueueUrl));
    }
    if let Some(name) = &trigger.queue_url_from_env {
        let from_process = process.get(name).filter(|v| !v.is_empty());
        let from_manifest = manifest
            .iter()
            .rev()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v);
        if let Some(url) = from_process.or(from_manifest) {
            return Ok((url.clone(), QueueUrlSource::TriggerQueueUrlFromEnv));
        }
    }
    Err(format!(
        "no queue URL: set --queue-url or QUEUE_URL, or give the trigger queueURL, or \
         queueURLFromEnv naming a variable that is set ({})",
        trigger.queue_url_from_env.as_deref().unwrap_or("none named")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn trigger(queue_url: Option<&str>, from_env: Option<&str>) -> SqsTrigger {
        SqsTrigger {
            queue_url: queue_url.map(str::to_owned),
            queue_url_from_env: from_env.map(str::to_owned),
            queue_length: 1,
            activation_queue_length: 0,
            scale_on_in_flight: true,
            scale_on_delayed: false,
            aws_region: None,
            aws_endpoint: None,
        }
    }

    #[test]
    fn the_environment_of_local_scaler_overrides_manifest_literals() {
        let process = map(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"), ("PATH", "/bin")]);
        let manifest = pairs(&[
            ("AWS_ENDPOINT_URL", "http://moto.svc:5000"),
            ("OUTPUT_URI", "s3://out/r"),
        ]);
        let env = job_environment(&process, &manifest, &[]);
        assert_eq!(env.vars["AWS_ENDPOINT_URL"], "http://127.0.0.1:5000");
        assert_eq!(env.vars["OUTPUT_URI"], "s3://out/r");
        assert_eq!(env.vars["PATH"], "/bin");
        assert_eq!(env.overridden_by_process, vec!["AWS_ENDPOINT_URL".to_owned()]);
        assert_eq!(env.from_manifest, vec!["OUTPUT_URI".to_owned()]);
    }

    #[test]
    fn what_local_scaler_sets_wins_over_everything() {
        let process = map(&[("QUEUE_URL", "http://a/1/q")]);
        let manifest = pairs(&[("QUEUE_URL", "http://b/1/q"), ("HOSTNAME", "pod")]);
        let forced = pairs(&[("QUEUE_URL", "http://c/1/q"), ("HOSTNAME", "encoder-1-1")]);
        let env = job_environment(&process, &manifest, &forced);
        assert_eq!(env.vars["QUEUE_URL"], "http://c/1/q");
        assert_eq!(env.vars["HOSTNAME"], "encoder-1-1");
    }

    #[test]
    fn a_repeated_manifest_variable_keeps_its_last_value() {
        let env = job_environment(&BTreeMap::new(), &pairs(&[("A", "1"), ("A", "2")]), &[]);
        assert_eq!(env.vars["A"], "2");
    }

    #[test]
    fn the_queue_url_comes_from_the_flag_then_queue_url_then_queue_url_from_env() {
        let process = map(&[("SQS_URL", "http://process/1/q")]);
        let manifest = pairs(&[("SQS_URL", "http://manifest/1/q"), ("OTHER", "http://other/1/q")]);
        let both = trigger(Some("http://trigger/1/q"), Some("SQS_URL"));
        assert_eq!(
            resolve_queue_url(Some("http://flag/1/q"), &both, &process, &manifest).unwrap(),
            ("http://flag/1/q".to_owned(), QueueUrlSource::FlagOrEnv)
        );
        assert_eq!(
            resolve_queue_url(None, &both, &process, &manifest).unwrap().1,
            QueueUrlSource::TriggerQueueUrl
        );
        let from_env = trigger(None, Some("SQS_URL"));
        assert_eq!(
            resolve_queue_url(None, &from_env, &process, &manifest).unwrap().0,
            "http://process/1/q"
        );
        assert_eq!(
            resolve_queue_url(None, &from_env, &BTreeMap::new(), &manifest)
                .unwrap()
                .0,
            "http://manifest/1/q"
        );
        let unset = trigger(None, Some("NOWHERE"));
        let err = resolve_queue_url(Some(""), &unset, &process, &manifest).unwrap_err();
        assert!(err.contains("NOWHERE"), "{err}");
    }
}
