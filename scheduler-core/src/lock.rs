//! The one lock type for plugin state that lives across requests (the prefix index, in-flight
//! counters), so an [`crate::EndpointPicker`] is `Send + Sync` and one instance can serve every
//! proxy worker of a process (the native Envoy module shares it across worker threads).
//!
//! With the `std` feature it is the OS mutex (futex: ~20 ns uncontended, parks under contention);
//! without it (the proxy-wasm build, where every VM is single-threaded) a spin lock that is never
//! contended. Plugins hold it only around one index or counter operation, never across a
//! scheduling cycle. A poisoned std mutex is used as is: the state it guards stays consistent
//! after any panic of a plugin (each operation is one insert/remove), and a proxy must not stop
//! scheduling because of one.

use core::ops::DerefMut;

/// A value behind the process-wide lock of this build.
#[derive(Default)]
pub struct Lock<T> {
    #[cfg(feature = "std")]
    inner: std::sync::Mutex<T>,
    #[cfg(not(feature = "std"))]
    inner: spin::Mutex<T>,
}

impl<T> Lock<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Lock {
            #[cfg(feature = "std")]
            inner: std::sync::Mutex::new(value),
            #[cfg(not(feature = "std"))]
            inner: spin::Mutex::new(value),
        }
    }

    /// Locks, waiting for another holder if there is one.
    pub fn lock(&self) -> impl DerefMut<Target = T> + '_ {
        #[cfg(feature = "std")]
        {
            self.inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
        #[cfg(not(feature = "std"))]
        {
            self.inner.lock()
        }
    }
}

/// A loaded picker is shared by every worker thread of the native module: it must stay
/// `Send + Sync` (a plugin with a `Cell`/`RefCell`/`Rc` inside fails to compile here).
const _: fn() = || {
    fn shared_across_threads<T: Send + Sync>() {}
    shared_across_threads::<crate::EndpointPicker>();
};
