//! Stopping on purpose: SIGTERM (Kubernetes deleting a pod, a Job's deadline) and SIGINT (Ctrl-C),
//! the same way in every program.
//!
//! [`Signals::install`] listens for both (it needs a Tokio runtime) and [`Signals::recv`] resolves
//! on the next one; [`signal`] is the one-shot form, a future for `with_graceful_shutdown` or a
//! `select!`. What each program does then is its own: the encoder releases its message, the
//! producer aborts its uploads, the analyzer drains its requests, local-scaler stops its Jobs.
//!
//! # Defer until ready
//!
//! Between the start of `main` and the moment the handlers exist there is a window in which a
//! SIGTERM would take its default action and end the process on the spot (for the encoder:
//! without releasing its message or reporting the kill). [`defer`], first thing in `main`, blocks
//! both signals on the main thread, and every thread started later inherits the mask;
//! [`Signals::install`] unblocks them once its handlers are in place, and a signal that arrived
//! meanwhile is delivered to them then. (A signal that arrives before `main`, while the dynamic
//! loader maps the shared libraries, still takes the default action: the process holds nothing
//! yet.)

use std::fmt;

use tokio::signal::unix::{SignalKind, signal as listen};

/// A signal that asks a program to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl Signal {
    /// The conventional exit status after this signal: 128 + its number.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
        })
    }
}

fn mask(how: libc::c_int) {
    // SAFETY: plain libc calls on a local, initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Holds SIGTERM and SIGINT back, for this thread and the threads it starts from now on, until
/// [`Signals::install`] is ready for them.
pub fn defer() {
    mask(libc::SIG_BLOCK);
}

/// Unblocks SIGTERM and SIGINT on the calling thread (pending ones are delivered now), for a
/// program path that never installs handlers and wants the default actions back.
pub fn resume() {
    mask(libc::SIG_UNBLOCK);
}

/// Handlers for SIGTERM and SIGINT.
#[derive(Debug)]
pub struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers, then unblocks signals held back by [`defer`] on this thread.
    ///
    /// # Errors
    ///
    /// When the handlers cannot be installed (outside a Tokio runtime with I/O enabled).
    pub fn install() -> std::io::Result<Self> {
        let terminate = listen(SignalKind::terminate())?;
        let interrupt = listen(SignalKind::interrupt())?;
        resume();
        Ok(Self { terminate, interrupt })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.terminate.recv() => Signal::Terminate,
            _ = self.interrupt.recv() => Signal::Interrupt,
        }
    }
}

/// Installs the handlers now and returns a future that resolves on the first signal.
///
/// # Errors
///
/// As [`Signals::install`].
pub fn signal() -> std::io::Result<impl Future<Output = Signal> + Send + 'static> {
    let mut signals = Signals::install()?;
    Ok(async move { signals.recv().await })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_codes_are_128_plus_the_signal_number() {
        assert_eq!(Signal::Interrupt.exit_code(), 128 + libc::SIGINT as u8);
        assert_eq!(Signal::Terminate.exit_code(), 128 + libc::SIGTERM as u8);
        assert_eq!(Signal::Terminate.to_string(), "SIGTERM");
    }

    #[tokio::test]
    async fn a_deferred_sigterm_waits_for_the_handlers_and_then_reaches_them() {
        // Deferred on this (the test's only) thread: the signal is held, not the default action.
        defer();
        // SAFETY: raise(3) sends the signal to the calling thread, where it is blocked.
        unsafe {
            libc::raise(libc::SIGTERM);
        }
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let mut signals = Signals::install().expect("handlers");
            signals.recv().await
        })
        .await
        .expect("the held SIGTERM is delivered once the handlers exist");
        assert_eq!(got, Signal::Terminate);
    }
}
