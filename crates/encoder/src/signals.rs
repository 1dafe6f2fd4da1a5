//! Holds SIGTERM and SIGINT back until the run's own handlers are installed.
//!
//! Between the start of `main` and the moment the async runtime listens for signals there is a
//! short window in which a SIGTERM would take its default action and end the process on the
//! spot, without releasing the message or reporting the kill. [`defer`] blocks both signals
//! first thing in `main` (threads started later inherit the mask); [`resume`] unblocks them once
//! the handlers are in place, and a signal that arrived meanwhile is delivered to them then.

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

/// Blocks SIGTERM and SIGINT for this thread and the threads it starts from now on.
pub fn defer() {
    mask(libc::SIG_BLOCK);
}

/// Unblocks them on the calling thread: pending signals are delivered now.
pub fn resume() {
    mask(libc::SIG_UNBLOCK);
}
