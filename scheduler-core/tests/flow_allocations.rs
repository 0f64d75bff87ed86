//! Heap allocations of the flow-control queues on the request path. With flow control on,
//! every request is admitted here (in the native module under a process-wide lock), and every
//! queued request leaves through a dispatch cycle; per-cycle lists (band priorities, their
//! ceilings, each flow's head) stay on the stack up to 32 bands or flows. A change that adds
//! allocations to either path fails here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use scheduler_core::flowcontrol::{Admission, FlowKey, FlowQueues};
use scheduler_core::plugin::QueuedRequest;
use scheduler_core::{load, Registry};

/// Counts the allocations (and reallocations) made by the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn bump() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn queues() -> FlowQueues<u32> {
    // Two bands with a usage-limit policy, so admission computes ceilings over both.
    let json = r#"{ "featureGates": ["flowControl"],
        "plugins": [{"type": "priority-holdback-policy", "parameters": {"minCeiling": 0.5}}],
        "flowControl": {"usageLimitPolicyPluginRef": "priority-holdback-policy"} }"#;
    let (picker, _) = load(json, &Registry::with_builtins()).expect("config loads");
    FlowQueues::new(Arc::clone(picker.flow_control().expect("flow control on")))
}

fn key(id: &str, priority: i32) -> FlowKey {
    FlowKey {
        fairness_id: id.into(),
        priority,
    }
}

#[test]
fn admitting_into_an_idle_pool_allocates_nothing() {
    let mut q = queues();
    let (low, high) = (key("tenant-a", 0), key("tenant-b", 10));
    // The first request of each priority makes its band.
    for k in [&low, &high] {
        assert_eq!(
            q.admit(k, QueuedRequest::default(), 0, 0, &mut || 0.1),
            Admission::Dispatch
        );
    }
    let before = allocations();
    for i in 0..1000 {
        let k = if i % 2 == 0 { &low } else { &high };
        assert_eq!(
            q.admit(k, QueuedRequest::default(), 0, i, &mut || 0.1),
            Admission::Dispatch
        );
    }
    // Counted before printing: printing allocates (the test harness captures output).
    let total = allocations() - before;
    println!("fast-path admission: {total} allocations for 1000 requests");
    assert_eq!(total, 0);
}

#[test]
fn a_dispatch_cycle_allocates_nothing_for_its_lists() {
    let mut q = queues();
    // Saturated: every request waits, in 8 flows.
    for i in 0..64u32 {
        let admitted = q.admit(
            &key(&format!("tenant-{}", i % 8), 0),
            QueuedRequest::default(),
            i,
            0,
            &mut || 1.0,
        );
        assert!(matches!(admitted, Admission::Queued(_)), "{admitted:?}");
    }
    // Each release is then scheduled, which lets the next one go.
    let before = allocations();
    let mut released = 0;
    while let Some(r) = q.dispatch(5, &mut || 0.1) {
        q.scheduled(r.ticket);
        released += 1;
    }
    assert_eq!(released, 64);
    let total = allocations() - before;
    println!("dispatch: {total} allocations for {released} releases");
    // The released-ticket list grows once; nothing per cycle.
    assert!(total <= 1, "{total} allocations for {released} releases");
}
