//! Rosenblatt's perceptron and its learning rule.
//!
//! The perceptron predicts $\hat y = \operatorname{sign}(w^\top x + b) \in \{-1, +1\}$.
//! Rosenblatt's rule visits the examples in order and, on every mistake
//! ($y\,(w^\top x + b) \le 0$), moves the hyperplane towards the example:
//! $w \leftarrow w + \eta\, y\, x$, $b \leftarrow b + \eta\, y$.
//!
//! **Convergence (Novikoff, 1962).** Write $\tilde x = (x, 1)$ and $\tilde w = (w, b)$. If
//! some unit vector $u$ separates the data with margin $\gamma$, i.e.
//! $y_i\, u^\top \tilde x_i \ge \gamma > 0$ for all $i$, and $\lVert \tilde x_i\rVert \le R$,
//! then starting from $\tilde w = 0$ the rule makes at most $(R/\gamma)^2$ mistakes. Each
//! mistake raises $u^\top \tilde w$ by at least $\eta\gamma$ and raises
//! $\lVert\tilde w\rVert^2$ by at most $\eta^2 R^2$ (the cross term $2\eta y\,\tilde
//! w^\top\tilde x$ is $\le 0$ on a mistake), so after $k$ mistakes
//! $k\eta\gamma \le u^\top\tilde w \le \lVert\tilde w\rVert \le \sqrt{k}\,\eta R$.
//!
//! **XOR cannot be learned.** XOR labels $(0,0), (1,1)$ negative and $(1,0), (0,1)$
//! positive. A separating line would need $b < 0$, $w_1 + w_2 + b < 0$, $w_1 + b > 0$ and
//! $w_2 + b > 0$; adding the last two gives $w_1 + w_2 + 2b > 0$, adding the first two gives
//! $w_1 + w_2 + 2b < 0$: a contradiction. So no weights classify all four points, the rule
//! makes a mistake in every epoch and, with integer inputs and $\eta = 1$, the weights
//! stay on a bounded integer lattice, so they must eventually repeat: the rule cycles.

use serde::Serialize;

/// A perceptron $\operatorname{sign}(w^\top x + b)$.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Perceptron {
    /// Weights, one per input.
    pub w: Vec<f64>,
    /// Bias.
    pub b: f64,
}

/// What [`Perceptron::fit`] saw, epoch by epoch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PerceptronFit {
    /// Mistakes made during each epoch.
    pub mistakes: Vec<usize>,
    /// `(w, b)` at the end of each epoch.
    pub weights: Vec<(Vec<f64>, f64)>,
    /// The first epoch (1-based) with no mistake, if any.
    pub converged_at: Option<usize>,
}

impl PerceptronFit {
    /// The total number of updates made.
    pub fn total_mistakes(&self) -> usize {
        self.mistakes.iter().sum()
    }

    /// `Some((first, again))` if the end-of-epoch weights of epoch `again` equal those
    /// of an earlier epoch `first` (both 1-based): from there on the rule repeats forever.
    pub fn cycle(&self) -> Option<(usize, usize)> {
        for j in 0..self.weights.len() {
            for i in 0..j {
                if self.weights[i] == self.weights[j] {
                    return Some((i + 1, j + 1));
                }
            }
        }
        None
    }
}

impl Perceptron {
    /// A perceptron with zero weights for `d` inputs.
    pub fn zeros(d: usize) -> Self {
        Perceptron {
            w: vec![0.0; d],
            b: 0.0,
        }
    }

    /// $w^\top x + b$.
    pub fn score(&self, x: &[f64]) -> f64 {
        assert_eq!(
            x.len(),
            self.w.len(),
            "Perceptron: input of length {} for {} weights",
            x.len(),
            self.w.len()
        );
        self.w.iter().zip(x).map(|(w, x)| w * x).sum::<f64>() + self.b
    }

    /// The predicted label, $+1$ or $-1$ (a score of exactly 0 counts as $-1$).
    pub fn predict(&self, x: &[f64]) -> f64 {
        if self.score(x) > 0.0 {
            1.0
        } else {
            -1.0
        }
    }

    /// The fraction of examples classified correctly.
    pub fn accuracy(&self, xs: &[Vec<f64>], ys: &[f64]) -> f64 {
        let hits = xs
            .iter()
            .zip(ys)
            .filter(|(x, &y)| self.predict(x) == y)
            .count();
        hits as f64 / xs.len() as f64
    }

    // ANCHOR: rosenblatt
    /// Rosenblatt's rule for at most `max_epochs` passes in the given order, stopping
    /// after the first pass without a mistake. Labels are $\pm 1$.
    pub fn fit(
        &mut self,
        xs: &[Vec<f64>],
        ys: &[f64],
        lr: f64,
        max_epochs: usize,
    ) -> PerceptronFit {
        let mut fit = PerceptronFit {
            mistakes: vec![],
            weights: vec![],
            converged_at: None,
        };
        for epoch in 1..=max_epochs {
            let mut mistakes = 0;
            for (x, &y) in xs.iter().zip(ys) {
                if y * self.score(x) <= 0.0 {
                    for (w, xi) in self.w.iter_mut().zip(x) {
                        *w += lr * y * xi;
                    }
                    self.b += lr * y;
                    mistakes += 1;
                }
            }
            fit.mistakes.push(mistakes);
            fit.weights.push((self.w.clone(), self.b));
            if mistakes == 0 {
                fit.converged_at = Some(epoch);
                break;
            }
        }
        fit
    }
    // ANCHOR_END: rosenblatt
}

/// The four XOR points and their $\pm 1$ labels.
pub fn xor_data() -> (Vec<Vec<f64>>, Vec<f64>) {
    let xs = vec![
        vec![0.0, 0.0],
        vec![0.0, 1.0],
        vec![1.0, 0.0],
        vec![1.0, 1.0],
    ];
    (xs, vec![-1.0, 1.0, 1.0, -1.0])
}
