//! Progress bars on stderr, shown only when stderr is a terminal: the library's
//! [`Progress`] reports drawn with indicatif.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pickleshelf::Progress;

/// Draws one bar per phase; draws nothing when stderr is not a terminal.
pub struct Bar {
    enabled: bool,
    bar: Option<ProgressBar>,
}

impl Bar {
    /// A bar for this process's stderr.
    pub fn stderr() -> Bar {
        Bar { enabled: std::io::stderr().is_terminal(), bar: None }
    }
}

impl Progress for Bar {
    fn start(&mut self, what: &'static str, total: Option<u64>) {
        self.finish();
        if !self.enabled {
            return;
        }
        let bar = match total {
            Some(n) => {
                let style =
                    ProgressStyle::with_template("{prefix:>11} [{wide_bar}] {human_pos:>9}/{human_len} eta {eta}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> ");
                ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()).with_style(style)
            }
            None => {
                let style = ProgressStyle::with_template("{prefix:>11} {spinner} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style)
            }
        };
        bar.set_prefix(what);
        bar.enable_steady_tick(Duration::from_millis(100));
        self.bar = Some(bar);
    }

    fn advance(&mut self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // An error ends the operation early: take the bar off the screen before the
        // error line is printed.
        self.finish();
    }
}
