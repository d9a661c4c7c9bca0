//! Progress on long work: `dlbook regen`, `train`, `bench` and `data fetch` run for
//! minutes, and a reader should never stare at a silent terminal.
//!
//! Every bar hangs off one process-wide [`indicatif::MultiProgress`], so nested work (an
//! experiment's training epochs under `regen`'s list of experiments) stacks neatly.
//! Bars draw on standard error only when it is a terminal: in CI logs, test runs and
//! notebooks they are hidden and cost nothing, and [`println()`] falls back to a plain line.

use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Whether bars are drawn (standard error is a terminal).
pub fn visible() -> bool {
    !multi().is_hidden()
}

/// A bar of `len` steps: `what`, the count, elapsed time, ETA, and a message the caller
/// updates (`bar.set_message("loss 0.123")`).
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix:>12.bold} [{bar:30}] {pos}/{len} {elapsed_precise} (ETA {eta}) {msg}",
    )
    .expect("a valid template")
    .progress_chars("=> ");
    let pb = multi().add(ProgressBar::new(len).with_style(style));
    pb.set_prefix(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(250));
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
    pb.enable_steady_tick(Duration::from_millis(250));
    pb
}

/// Prints a line on standard error above the bars (a plain line when bars are hidden).
pub fn println(line: impl AsRef<str>) {
    if visible() {
        let _ = multi().println(line.as_ref());
    } else {
        eprintln!("{}", line.as_ref());
    }
}
