//! What the tests of every crate share. Nothing here fakes AWS or FFmpeg.
//!
//! - [`emulator`]: a real SQS/S3 emulator, moto or LocalStack, started once per test binary on a
//!   loopback port and reached over HTTP with the real AWS SDK; each test works in queues and
//!   buckets of its own names. [`on_both_emulators!`] runs a test on each.
//! - [`process`]: the workspace's built programs, run with a clean environment; signals, exits,
//!   collected output.
//! - [`files`]: temporary directories, generated files, the sample media set, `ffprobe`.
//! - [`stack`]: one test's whole world: an emulator's queue, dead-letter queue and buckets, a
//!   result analyzer, scratch space, and the environment the programs need.
//! - [`proxy`]: a TCP proxy that cuts a program off from the emulator for a while.
//! - [`players`]: an output folder served over HTTP on loopback and played in headless Chromium
//!   with hls.js and dash.js (`tests/players`), with a report of what the player did; `ffprobe`
//!   of a manifest over HTTP.
//!
//! A missing part (an emulator, ffprobe, a built program, node, Chromium) fails the test with a
//! message naming it; nothing is silently skipped. The crate depends on no crate of the workspace,
//! so testing `encoding-common` or `producer` does not compile FFmpeg's bindings.

pub mod emulator;
pub mod files;
pub mod players;
pub mod process;
pub mod proxy;
pub mod stack;

pub use emulator::{Emulator, Kind};
pub use files::{TempDir, ffprobe, make_clip, make_clip_sized, make_noisy_clip, media, media_dir, num, streams};
pub use process::{
    LineCollector, Process, assert_exit, bin, clean_command, exit_code, free_port, run, signal, wait_exit,
    wait_for_line,
};
pub use proxy::{Fault, FaultProxy};
pub use stack::{Analyzer, Stack};

/// Runs each listed `async fn name(kind: Kind)` as two tests, `moto::name` and
/// `localstack::name`, so that a failure names the emulator it happened on.
///
/// ```ignore
/// async fn a_message_is_received(kind: Kind) { /* ... */ }
/// test_support::on_both_emulators!(a_message_is_received);
/// ```
#[macro_export]
macro_rules! on_both_emulators {
    ($($name:ident),+ $(,)?) => {
        mod moto {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name($crate::Kind::Moto).await
                }
            )+
        }
        mod localstack {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name($crate::Kind::LocalStack).await
                }
            )+
        }
    };
}
