//! Asking long work (training) to stop at the next step, from another thread or a signal
//! handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A shared "please stop" flag. Cloning shares it.
#[derive(Debug, Clone)]
pub struct CancelToken(Flag);

#[derive(Debug, Clone)]
enum Flag {
    Shared(Arc<AtomicBool>),
    /// A process-wide flag, for a signal handler (which can touch only statics).
    Static(&'static AtomicBool),
}

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelToken {
    pub fn new() -> Self {
        Self(Flag::Shared(Arc::new(AtomicBool::new(false))))
    }

    /// A token backed by a static flag.
    pub fn from_static(flag: &'static AtomicBool) -> Self {
        Self(Flag::Static(flag))
    }

    fn flag(&self) -> &AtomicBool {
        match &self.0 {
            Flag::Shared(f) => f,
            Flag::Static(f) => f,
        }
    }

    /// Asks the work to stop at its next step.
    pub fn cancel(&self) {
        self.flag().store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag().load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let a = CancelToken::new();
        let b = a.clone();
        assert!(!b.is_cancelled());
        a.cancel();
        assert!(b.is_cancelled());
        static FLAG: AtomicBool = AtomicBool::new(false);
        let s = CancelToken::from_static(&FLAG);
        s.clone().cancel();
        assert!(FLAG.load(Ordering::SeqCst) && s.is_cancelled());
    }
}
