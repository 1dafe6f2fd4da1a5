//! Who a rendition belongs to: the request's identity, and what the encoder writes in each stored
//! rendition's S3 user metadata so that a later delivery can tell "already made" from "to make".
//!
//! A rendition is *the same* when it was made from the same source object content (bucket, key,
//! ETag) with the same settings ([`SETTINGS_VERSION`] and its quality); it was made *by the same
//! request* when its `request-id` is this request's identity too. The encoder skips the work for
//! the first, and reports the second as `processed` again (an earlier delivery stored it but did
//! not get to delete its message), the first otherwise as `duplicate`.

use std::collections::HashMap;

use crate::{EncodeRequest, Quality};

/// Identifies the encoding settings in the renditions' metadata, for the duplicate check: bump it
/// when the ladder changes so that old renditions are made again.
pub const SETTINGS_VERSION: &str = "h264-high-aac-v2";

/// User-metadata key: the source object's bucket.
pub const META_SOURCE_BUCKET: &str = "source-bucket";
/// User-metadata key: the source object's key.
pub const META_SOURCE_KEY: &str = "source-key";
/// User-metadata key: the source object's ETag (its content version).
pub const META_SOURCE_ETAG: &str = "source-etag";
/// User-metadata key: `{SETTINGS_VERSION}/{quality}`.
pub const META_SETTINGS: &str = "settings";
/// User-metadata key: the identity of the request that made the rendition ([`request_identity`]).
pub const META_REQUEST_ID: &str = "request-id";
/// User-metadata key: the request's `video_id`.
pub const META_VIDEO_ID: &str = "video-id";

/// The keys that decide whether a stored rendition is the one a request would make.
const SAME_RENDITION_KEYS: [&str; 4] = [META_SOURCE_BUCKET, META_SOURCE_KEY, META_SOURCE_ETAG, META_SETTINGS];

/// The 64-bit FNV-1a digest of `bytes`: stable across builds and platforms, unlike `std`'s
/// hasher, which an identity stored in S3 needs.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The identity of a request for the duplicate check and the analyzer: its `request_id`, or,
/// without one, a digest of the request itself (`body-` and 16 hex digits).
pub fn request_identity(r: &EncodeRequest) -> String {
    r.request_id.clone().unwrap_or_else(|| {
        // The request as its producer sent it: a chunk or the stitch of it is the same request.
        let whole = EncodeRequest {
            part: None,
            ..r.clone()
        };
        let digest = fnv1a64(whole.to_json().as_bytes());
        format!("body-{digest:016x}")
    })
}

/// The user metadata of the rendition `quality` of `request`, made from the source whose ETag is
/// `source_etag`.
pub fn rendition_metadata(request: &EncodeRequest, source_etag: &str, quality: Quality) -> HashMap<String, String> {
    HashMap::from([
        (META_SOURCE_BUCKET.to_owned(), request.source.bucket.clone()),
        (META_SOURCE_KEY.to_owned(), request.source.key.clone()),
        (META_SOURCE_ETAG.to_owned(), source_etag.to_owned()),
        (META_SETTINGS.to_owned(), format!("{SETTINGS_VERSION}/{quality}")),
        (META_REQUEST_ID.to_owned(), request_identity(request)),
        (META_VIDEO_ID.to_owned(), request.video_id.clone()),
    ])
}

/// The user metadata of the streaming files of `request` (the manifests, the media beside them):
/// like a rendition's, with the settings `{SETTINGS_VERSION}/stream/{qualities}` naming every
/// quality in the request's order, so that a set for other qualities is made again.
pub fn stream_metadata(request: &EncodeRequest, source_etag: &str) -> HashMap<String, String> {
    let qualities: Vec<&str> = request.qualities.iter().map(|q| q.as_str()).collect();
    let mut m = rendition_metadata(request, source_etag, request.qualities[0]);
    m.insert(
        META_SETTINGS.to_owned(),
        format!("{SETTINGS_VERSION}/stream/{}", qualities.join("+")),
    );
    m
}

/// Whether `found` (a stored rendition's metadata) describes the rendition `expected` describes.
pub fn same_rendition(found: &HashMap<String, String>, expected: &HashMap<String, String>) -> bool {
    SAME_RENDITION_KEYS
        .iter()
        .all(|k| found.get(*k).is_some() && found.get(*k) == expected.get(*k))
}

/// Whether `found` was stored by the request `expected` describes.
pub fn same_request(found: &HashMap<String, String>, expected: &HashMap<String, String>) -> bool {
    found.get(META_REQUEST_ID).is_some() && found.get(META_REQUEST_ID) == expected.get(META_REQUEST_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> EncodeRequest {
        EncodeRequest::from_json(json).unwrap()
    }

    #[test]
    fn a_stream_matches_only_for_the_same_qualities_in_the_same_order() {
        let a = request(r#"{"video_id":"v","source":"s3://in-b/k.mp4","qualities":["720p","480p"]}"#);
        let b = request(r#"{"video_id":"v","source":"s3://in-b/k.mp4","qualities":["480p","720p"]}"#);
        let m = stream_metadata(&a, "\"e\"");
        assert_eq!(m[META_SETTINGS], format!("{SETTINGS_VERSION}/stream/720p+480p"));
        assert!(same_rendition(&m, &stream_metadata(&a, "\"e\"")));
        assert!(!same_rendition(&m, &stream_metadata(&b, "\"e\"")));
        assert!(!same_rendition(&m, &stream_metadata(&a, "\"f\"")));
        assert!(
            !same_rendition(&m, &rendition_metadata(&a, "\"e\"", Quality::P720)),
            "a stream is not an MP4"
        );
    }

    #[test]
    fn a_rendition_matches_only_with_the_same_source_content_and_settings() {
        let r = request(r#"{"video_id":"v","source":"s3://in-b/k.mp4","quality":"480p","request_id":"r1"}"#);
        let expected = rendition_metadata(&r, "\"e1\"", Quality::P480);
        let mut found = expected.clone();
        found.insert(META_REQUEST_ID.into(), "other".into());
        assert!(same_rendition(&found, &expected));
        assert!(!same_request(&found, &expected));
        assert!(same_request(&expected, &expected));
        found.insert(META_SOURCE_ETAG.into(), "\"e2\"".into());
        assert!(!same_rendition(&found, &expected));
        assert!(!same_rendition(&HashMap::new(), &expected));
        assert!(!same_rendition(
            &expected,
            &rendition_metadata(&r, "\"e1\"", Quality::P720)
        ));
    }

    #[test]
    fn a_request_without_id_gets_a_stable_identity_and_one_with_an_id_keeps_it() {
        let r = request(r#"{"video_id":"v","source":"s3://in-b/a.mp4","quality":"480p"}"#);
        assert_eq!(request_identity(&r), request_identity(&r.clone()));
        assert!(request_identity(&r).starts_with("body-"), "{}", request_identity(&r));
        assert_eq!(request_identity(&r).len(), "body-".len() + 16);
        let other = request(r#"{"video_id":"w","source":"s3://in-b/a.mp4","quality":"480p"}"#);
        assert_ne!(request_identity(&r), request_identity(&other));
        let chunk = request(
            r#"{"video_id":"v","source":"s3://in-b/a.mp4","quality":"480p","chunk":{"plan":"p-1","index":0,"count":2}}"#,
        );
        assert_eq!(request_identity(&chunk), request_identity(&r), "a chunk is its request");
        let named = request(r#"{"video_id":"v","source":"s3://in-b/a.mp4","quality":"480p","request_id":"abc"}"#);
        assert_eq!(request_identity(&named), "abc");
    }

    #[test]
    fn the_metadata_names_the_source_settings_request_and_video() {
        let r = request(r#"{"video_id":"v","source":"s3://in-b/k.mp4","quality":"720p","request_id":"r1"}"#);
        let m = rendition_metadata(&r, "\"e1\"", Quality::P720);
        assert_eq!(m[META_SOURCE_BUCKET], "in-b");
        assert_eq!(m[META_SOURCE_KEY], "k.mp4");
        assert_eq!(m[META_SOURCE_ETAG], "\"e1\"");
        assert_eq!(m[META_SETTINGS], format!("{SETTINGS_VERSION}/720p"));
        assert_eq!(m[META_REQUEST_ID], "r1");
        assert_eq!(m[META_VIDEO_ID], "v");
    }
}
