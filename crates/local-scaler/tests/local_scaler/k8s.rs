use std::path::Path;
use std::time::Duration;

use local_scaler::manifest::ScaledJob;

#[test]
fn the_manifest_in_k8s_base_is_one_local_scaler_can_run() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../k8s/base/encoder-scaledjob.yaml");
    let job = ScaledJob::load(&path)
        .unwrap_or_else(|e| panic!("{}: {e} ({:?})", path.display(), std::error::Error::source(&e)));
    assert!(
        job.trigger.queue_url_from_env.as_deref() == Some("QUEUE_URL") || job.trigger.queue_url.is_some(),
        "the trigger must name the queue: {:?}",
        job.trigger
    );
    assert!(job.trigger.queue_length >= 1);
    assert!(job.polling_interval >= Duration::from_secs(1));
    assert_eq!(job.job.container_name, "encoder");
    for note in &job.ignored {
        println!("not applied locally: {note}");
    }
}
