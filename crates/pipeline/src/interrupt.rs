//! Ctrl-C during training: the first one asks the run to stop at the next step (the
//! checkpoint of the last completed epoch is kept and `--resume` continues from it); a
//! second one quits at once.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::cancel::CancelToken;

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_CODE: u8 = 130;

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    // Only async-signal-safe calls here: an atomic swap, write(2) and _exit(2).
    if REQUESTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe and ends the process without unwinding.
        unsafe { libc::_exit(i32::from(EXIT_CODE)) }
    }
    let msg = b"\ninterrupt: stopping after this step (Ctrl-C again to quit now)\n";
    // SAFETY: writing a static buffer to stderr; the result does not matter here.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
    }
}

/// Installs the Ctrl-C handler (Unix; elsewhere Ctrl-C ends the process, which is still
/// safe: checkpoints and model files are written atomically) and returns the token it
/// cancels.
pub fn install() -> CancelToken {
    #[cfg(unix)]
    // SAFETY: `on_sigint` only touches an atomic and calls async-signal-safe functions.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    CancelToken::from_static(&REQUESTED)
}
