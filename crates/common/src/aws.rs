//! AWS clients, built once from the standard SDK configuration.
//!
//! There is no custom endpoint or credential setting: `AWS_REGION`, the default credentials chain
//! (static keys, profiles, IRSA web identity on EKS) and `AWS_ENDPOINT_URL` (or the per-service
//! `AWS_ENDPOINT_URL_SQS` / `AWS_ENDPOINT_URL_S3`) are read by the SDK itself. The one adjustment:
//! when S3 is reached through an endpoint override (moto, MinIO, LocalStack), requests use path-style
//! addressing, because such an endpoint is a plain hostname without per-bucket subdomains.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// Loads the shared SDK configuration from the environment.
pub async fn load_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// An SQS client for `config`.
pub fn sqs_client(config: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

/// An S3 client for `config`, with path-style addressing when an endpoint override is in use.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let builder = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(s3_endpoint_overridden(config))
        // Objects uploaded in parts carry part-level checksums the SDK cannot validate whole; the
        // encoder checks sizes and probes what it downloads instead.
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired);
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// Whether S3 requests go to an endpoint other than AWS's own.
fn s3_endpoint_overridden(config: &SdkConfig) -> bool {
    config.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some_and(|v| !v.is_empty())
}

/// A short reason for an AWS SDK error: `Code: message` when the service answered with a code,
/// otherwise the error with its causes (a connection refused, a timeout, an unreadable answer).
pub fn error_reason<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if let SdkError::ServiceError(e) = error
        && let Some(code) = e.err().code()
    {
        return match e.err().message() {
            Some(m) if !m.is_empty() => format!("{code}: {m}"),
            _ => code.to_owned(),
        };
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
