//! Per-operation timing of the recurrent layers and the models built on them, for
//! `dlbook bench`: off unless [`enable`]d, when each timed operation adds its duration to
//! a total by name. A profile of a training step needs the inside of a layer (the input
//! projection, the recurrent products, the gate arithmetic), which no per-layer timer
//! can see.
//!
//! Disabled, a timed call costs one relaxed atomic load; enabled, two clock readings and
//! a lock. Totals are process-wide, so operations timed on any thread of a pool are
//! counted; with a thread-CPU clock only the calling thread's time is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static ON: AtomicBool = AtomicBool::new(false);

struct State {
    clock: Option<fn() -> f64>,
    totals: Vec<(&'static str, f64)>,
}

static STATE: Mutex<State> = Mutex::new(State {
    clock: None,
    totals: vec![],
});

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts recording, with `clock` (seconds) as the time source; clears the totals.
pub fn enable(clock: fn() -> f64) {
    let mut s = state();
    s.clock = Some(clock);
    s.totals.clear();
    ON.store(true, Ordering::Relaxed);
}

/// Stops recording and returns the totals in seconds, by operation, in the order the
/// operations were first seen.
pub fn disable() -> Vec<(&'static str, f64)> {
    ON.store(false, Ordering::Relaxed);
    let mut s = state();
    s.clock = None;
    std::mem::take(&mut s.totals)
}

/// Runs `f`, adding its duration to the total of `op` when recording.
#[inline]
pub fn time<R>(op: &'static str, f: impl FnOnce() -> R) -> R {
    if !ON.load(Ordering::Relaxed) {
        return f();
    }
    let Some(clock) = state().clock else {
        return f();
    };
    let t = clock();
    let out = f();
    let dt = clock() - t;
    let mut s = state();
    match s.totals.iter_mut().find(|(name, _)| *name == op) {
        Some((_, total)) => *total += dt,
        None => s.totals.push((op, dt)),
    }
    out
}
