//! Progress on long work: `dlbook regen`, `train`, `bench` and `data fetch` run for
//! minutes, and a reader should never stare at a silent terminal.
//!
//! Every bar hangs off one process-wide [`indicatif::MultiProgress`], so nested work (an
//! experiment's training epochs under `regen`'s list of experiments) stacks neatly.
//! Bars are hidden until a program asks for them with [`show_on_terminal`] (the `dlbook`
//! command does), and then drawn on standard error only when it is a terminal. So in CI
//! logs, test runs (whose output a terminal shows as it comes) and notebooks they are
//! hidden and cost nothing, and [`println()`] falls back to a plain line.

use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::hidden()))
}

/// Draws bars from now on, on standard error if it is a terminal (an indicatif target
/// on anything else stays hidden). Called once, before any bar is made.
pub fn show_on_terminal() {
    multi().set_draw_target(ProgressDrawTarget::stderr());
}

/// Whether bars are drawn ([`show_on_terminal`] was called and standard error is a
/// terminal).
pub fn visible() -> bool {
    !multi().is_hidden()
}

/// A bar of `len` steps: `what`, the count, elapsed time, ETA, and a message the caller
/// updates (`bar.set_message("loss 0.123")`).
pub fn bar(len: u64, what: &str) -> ProgressBar {
    bar_from(0, len, what)
}

/// A [`bar`] whose first `done` steps were done before (a resumed run): the ETA counts
/// only the steps it sees taken.
pub fn bar_from(done: u64, len: u64, what: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix:>12.bold} [{bar:30}] {pos}/{len} {elapsed_precise} (ETA {eta}) {msg}",
    )
    .expect("a valid template")
    .progress_chars("=> ");
    let pb = multi().add(ProgressBar::new(len).with_style(style));
    pb.set_prefix(what.to_string());
    // The estimator takes in `done` at this tick and forgets the jump at the reset
    // (which keeps the position).
    pb.set_position(done);
    pb.tick();
    pb.reset_eta();
    steady(&pb);
    pb
}

/// A spinner for work of unknown length: `what`, elapsed time and a message.
pub fn spinner(what: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix:>12.bold} {spinner} {elapsed_precise} {msg}",
    )
    .expect("a valid template");
    let pb = multi().add(ProgressBar::new_spinner().with_style(style));
    pb.set_prefix(what.to_string());
    steady(&pb);
    pb
}

/// Redraws `pb` a few times a second, so that elapsed time and spinners move between
/// updates; not when hidden, where the ticking thread would be wasted.
fn steady(pb: &ProgressBar) {
    if !pb.is_hidden() {
        pb.enable_steady_tick(Duration::from_millis(250));
    }
}

/// Prints a line on standard error above the bars (a plain line when bars are hidden).
pub fn println(line: impl AsRef<str>) {
    if visible() {
        let _ = multi().println(line.as_ref());
    } else {
        eprintln!("{}", line.as_ref());
    }
}
