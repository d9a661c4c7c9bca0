//! Bayesian networks over discrete variables.
//!
//! A network is a DAG whose every variable $X_v$ has a conditional probability table
//! $P(X_v \mid \mathrm{pa}(X_v))$; the joint distribution factorises as
//! $P(x_1, \dots, x_n) = \prod_v P(x_v \mid \mathrm{pa}_v)$.
//!
//! * **d-separation**: $X \perp Y \mid Z$ holds in every distribution that factorises
//!   over the graph when every trail from $X$ to $Y$ is blocked: a chain or fork
//!   through an observed node, or a collider ($\to W \leftarrow$) with neither $W$ nor
//!   any descendant observed. The reachability ("Bayes ball") algorithm finds every
//!   node reachable by an active trail in time linear in the graph.
//! * **Exact inference**: by *enumeration*, $P(q \mid e) \propto \sum_{h} P(q, e, h)$
//!   over every assignment of the hidden variables (exponential); by *variable
//!   elimination*, multiply only the factors that mention a variable and sum it out,
//!   one variable at a time (exponential only in the largest factor built).
//! * **Likelihood weighting**: sample the non-evidence variables in topological order
//!   from their CPTs, fix the evidence, weight each sample by
//!   $\prod_{e} P(e \mid \mathrm{pa}_e)$; the weighted frequencies converge to
//!   $P(q \mid e)$.
//! * **Parameter learning**: with complete data, the posterior mean of each CPT row
//!   under a symmetric Dirichlet($\alpha$) prior is
//!   $(N_{v, u, x} + \alpha) / (N_{v, u} + \alpha\,|X_v|)$.

// The recursions index states and time steps the way the equations above do.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeSet;

use super::draw;
use anyhow::{bail, ensure, Result};
use rand::Rng;

/// A discrete Bayesian network. Variables are numbered in the order they were added,
/// which is a topological order (a variable's parents are added before it), so the
/// graph is acyclic by construction.
#[derive(Clone, Debug, PartialEq)]
pub struct BayesNet {
    names: Vec<String>,
    card: Vec<usize>,
    parents: Vec<Vec<usize>>,
    /// Row-major CPTs: row = parent configuration (first parent most significant),
    /// column = the variable's value.
    cpts: Vec<Vec<f64>>,
}

/// Evidence: (variable, observed value) pairs.
pub type Evidence = [(usize, usize)];

impl Default for BayesNet {
    fn default() -> Self {
        Self::new()
    }
}

impl BayesNet {
    /// An empty network.
    pub fn new() -> BayesNet {
        BayesNet {
            names: vec![],
            card: vec![],
            parents: vec![],
            cpts: vec![],
        }
    }

    /// Adds a variable with `card` values, the given (already added) parents, and its
    /// CPT: one row of `card` probabilities per parent configuration, the first parent
    /// most significant. Returns its index.
    pub fn add(
        &mut self,
        name: &str,
        card: usize,
        parents: &[usize],
        cpt: Vec<f64>,
    ) -> Result<usize> {
        ensure!(card >= 1, "variable {name} needs at least one value");
        ensure!(
            !self.names.iter().any(|n| n == name),
            "variable {name} is already in the network"
        );
        let v = self.names.len();
        for &p in parents {
            ensure!(
                p < v,
                "parent {p} of {name} is not in the network yet (add parents first)"
            );
        }
        let rows: usize = parents.iter().map(|&p| self.card[p]).product();
        ensure!(
            cpt.len() == rows * card,
            "the CPT of {name} needs {rows} rows of {card} (= {}), got {}",
            rows * card,
            cpt.len()
        );
        for (r, row) in cpt.chunks(card).enumerate() {
            let s: f64 = row.iter().sum();
            ensure!(
                row.iter().all(|x| x.is_finite() && *x >= 0.0) && (s - 1.0).abs() < 1e-9,
                "row {r} of the CPT of {name} is not a distribution: {row:?}"
            );
        }
        self.names.push(name.into());
        self.card.push(card);
        self.parents.push(parents.to_vec());
        self.cpts.push(cpt);
        Ok(v)
    }

    /// Adds a binary variable (0 = false, 1 = true) given $P(\text{true})$ for each
    /// parent configuration.
    pub fn add_binary(
        &mut self,
        name: &str,
        parents: &[usize],
        p_true: &[f64],
    ) -> Result<usize> {
        let cpt = p_true.iter().flat_map(|&p| [1.0 - p, p]).collect();
        self.add(name, 2, parents, cpt)
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the network has no variables.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The index of a variable by name.
    pub fn index(&self, name: &str) -> Result<usize> {
        match self.names.iter().position(|n| n == name) {
            Some(i) => Ok(i),
            None => bail!(
                "no variable called {name:?}; the network has {:?}",
                self.names
            ),
        }
    }

    /// The variables' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The number of values of each variable.
    pub fn cards(&self) -> &[usize] {
        &self.card
    }

    /// The parents of each variable.
    pub fn parents(&self) -> &[Vec<usize>] {
        &self.parents
    }

    /// The CPT of each variable (rows: parent configurations).
    pub fn cpts(&self) -> &[Vec<f64>] {
        &self.cpts
    }

    fn row_index(&self, v: usize, x: &[usize]) -> usize {
        self.parents[v]
            .iter()
            .fold(0, |acc, &p| acc * self.card[p] + x[p])
    }

    /// $P(X_v = x_v \mid \mathrm{pa}_v)$ read from a full assignment `x`.
    pub fn local(&self, v: usize, x: &[usize]) -> f64 {
        self.cpts[v][self.row_index(v, x) * self.card[v] + x[v]]
    }

    /// The joint probability of a full assignment.
    pub fn joint(&self, x: &[usize]) -> f64 {
        assert_eq!(
            x.len(),
            self.len(),
            "an assignment gives one value per variable"
        );
        (0..self.len()).map(|v| self.local(v, x)).product()
    }

    fn children(&self) -> Vec<Vec<usize>> {
        let mut ch = vec![vec![]; self.len()];
        for (v, ps) in self.parents.iter().enumerate() {
            for &p in ps {
                ch[p].push(v);
            }
        }
        ch
    }

    // ANCHOR: d_separation
    /// The variables reachable from `x` by an active trail given the observed `z`
    /// (Koller and Friedman's algorithm 3.1, "Bayes ball"). A trail may pass a collider
    /// only if it or a descendant is observed, and a chain or fork only if unobserved.
    pub fn reachable(&self, x: usize, z: &[usize]) -> BTreeSet<usize> {
        let observed: BTreeSet<usize> = z.iter().copied().collect();
        // Phase 1: observed nodes and their ancestors (colliders they open).
        let mut opens = BTreeSet::new();
        let mut stack: Vec<usize> = z.to_vec();
        while let Some(v) = stack.pop() {
            if opens.insert(v) {
                stack.extend(&self.parents[v]);
            }
        }
        // Phase 2: search over (node, arrived from a child = going up).
        let children = self.children();
        let mut visited = BTreeSet::new();
        let mut reached = BTreeSet::new();
        let mut todo = vec![(x, true)];
        while let Some((v, up)) = todo.pop() {
            if !visited.insert((v, up)) {
                continue;
            }
            if !observed.contains(&v) {
                reached.insert(v);
            }
            if up && !observed.contains(&v) {
                todo.extend(self.parents[v].iter().map(|&p| (p, true)));
                todo.extend(children[v].iter().map(|&c| (c, false)));
            } else if !up {
                if !observed.contains(&v) {
                    todo.extend(children[v].iter().map(|&c| (c, false)));
                }
                if opens.contains(&v) {
                    todo.extend(self.parents[v].iter().map(|&p| (p, true)));
                }
            }
        }
        reached.remove(&x);
        reached
    }

    /// Whether `x` and `y` are d-separated given `z`.
    pub fn d_separated(&self, x: usize, y: usize, z: &[usize]) -> bool {
        !self.reachable(x, z).contains(&y)
    }
    // ANCHOR_END: d_separation

    fn check_evidence(&self, target: usize, evidence: &Evidence) {
        assert!(
            target < self.len(),
            "query variable {target} is not in the network"
        );
        for &(v, x) in evidence {
            assert!(
                v < self.len() && x < self.card[v],
                "evidence ({v}, {x}) is out of range"
            );
            assert!(v != target, "the query variable {target} is also evidence");
        }
    }

    // ANCHOR: enumeration
    /// $P(X_{target} \mid e)$ by summing the joint over every assignment that agrees
    /// with the evidence. Exponential in the number of variables: the reference the
    /// other methods are checked against.
    pub fn query_enumeration(&self, target: usize, evidence: &Evidence) -> Vec<f64> {
        self.check_evidence(target, evidence);
        let n = self.len();
        let mut out = vec![0.0; self.card[target]];
        let mut x = vec![0; n];
        for &(v, val) in evidence {
            x[v] = val;
        }
        let free: Vec<usize> = (0..n)
            .filter(|v| !evidence.iter().any(|e| e.0 == *v))
            .collect();
        loop {
            out[x[target]] += self.joint(&x);
            // Odometer over the free variables.
            let mut i = 0;
            loop {
                if i == free.len() {
                    return normalized(out);
                }
                let v = free[i];
                x[v] += 1;
                if x[v] < self.card[v] {
                    break;
                }
                x[v] = 0;
                i += 1;
            }
        }
    }
    // ANCHOR_END: enumeration

    /// The CPT of `v` as a factor over (parents..., v).
    fn factor(&self, v: usize) -> Factor {
        let mut vars = self.parents[v].clone();
        vars.push(v);
        Factor {
            card: vars.iter().map(|&u| self.card[u]).collect(),
            vars,
            values: self.cpts[v].clone(),
        }
    }

    // ANCHOR: variable_elimination
    /// $P(X_{target} \mid e)$ by variable elimination: evidence is fixed in every
    /// factor, then each hidden variable is eliminated (the one whose product factor
    /// is smallest first), and the remaining factors over the target are multiplied.
    pub fn query_elimination(&self, target: usize, evidence: &Evidence) -> Vec<f64> {
        self.check_evidence(target, evidence);
        let mut factors: Vec<Factor> = (0..self.len())
            .map(|v| {
                evidence
                    .iter()
                    .fold(self.factor(v), |f, &(e, x)| f.reduce(e, x))
            })
            .collect();
        let mut hidden: Vec<usize> = (0..self.len())
            .filter(|&v| v != target && !evidence.iter().any(|e| e.0 == v))
            .collect();
        while !hidden.is_empty() {
            // Greedy order: the variable whose elimination builds the smallest factor.
            let size = |v: usize| -> usize {
                let mut vars = BTreeSet::new();
                for f in factors.iter().filter(|f| f.vars.contains(&v)) {
                    vars.extend(f.vars.iter().copied());
                }
                vars.iter().map(|&u| self.card[u]).product()
            };
            let pos = (0..hidden.len())
                .min_by_key(|&i| size(hidden[i]))
                .expect("non-empty");
            let v = hidden.swap_remove(pos);
            let (with, without): (Vec<Factor>, Vec<Factor>) =
                factors.into_iter().partition(|f| f.vars.contains(&v));
            factors = without;
            if let Some(product) = with.into_iter().reduce(|a, b| a.product(&b)) {
                factors.push(product.sum_out(v));
            }
        }
        let result = factors
            .into_iter()
            .reduce(|a, b| a.product(&b))
            .expect("the target's own CPT remains");
        assert_eq!(result.vars, vec![target], "only the target is left");
        normalized(result.values)
    }
    // ANCHOR_END: variable_elimination

    /// One joint sample, drawn in topological order.
    pub fn sample(&self, rng: &mut impl Rng) -> Vec<usize> {
        let mut x = vec![0; self.len()];
        for v in 0..self.len() {
            let r = self.row_index(v, &x) * self.card[v];
            x[v] = draw(&self.cpts[v][r..r + self.card[v]], rng);
        }
        x
    }

    // ANCHOR: likelihood_weighting
    /// $P(X_{target} \mid e)$ estimated from `n` likelihood-weighted samples.
    pub fn query_likelihood_weighting(
        &self,
        target: usize,
        evidence: &Evidence,
        n: usize,
        rng: &mut impl Rng,
    ) -> Vec<f64> {
        self.check_evidence(target, evidence);
        let mut fixed: Vec<Option<usize>> = vec![None; self.len()];
        for &(v, x) in evidence {
            fixed[v] = Some(x);
        }
        let mut out = vec![0.0; self.card[target]];
        let mut x = vec![0; self.len()];
        for _ in 0..n {
            let mut w = 1.0;
            for v in 0..self.len() {
                let r = self.row_index(v, &x) * self.card[v];
                let row = &self.cpts[v][r..r + self.card[v]];
                match fixed[v] {
                    Some(val) => {
                        x[v] = val;
                        w *= row[val];
                    }
                    None => x[v] = draw(row, rng),
                }
            }
            out[x[target]] += w;
        }
        normalized(out)
    }
    // ANCHOR_END: likelihood_weighting

    // ANCHOR: learning
    /// The same structure with CPTs learned from complete `data` (one row per sample,
    /// one value per variable): posterior means under a symmetric Dirichlet(`alpha`)
    /// prior on every row. With `alpha = 0` a parent configuration never seen in the
    /// data is an error; with `alpha > 0` it gets a uniform row.
    pub fn fit_cpts(&self, data: &[Vec<usize>], alpha: f64) -> Result<BayesNet> {
        ensure!(
            alpha >= 0.0 && alpha.is_finite(),
            "alpha must be finite and ≥ 0, got {alpha}"
        );
        ensure!(!data.is_empty(), "no samples to learn from");
        let mut counts: Vec<Vec<f64>> =
            self.cpts.iter().map(|c| vec![0.0; c.len()]).collect();
        for (i, x) in data.iter().enumerate() {
            ensure!(
                x.len() == self.len(),
                "sample {i} has {} values, the network {} variables",
                x.len(),
                self.len()
            );
            for v in 0..self.len() {
                ensure!(
                    x[v] < self.card[v],
                    "sample {i}: value {} of {} is out of range",
                    x[v],
                    self.names[v]
                );
            }
            for v in 0..self.len() {
                counts[v][self.row_index(v, x) * self.card[v] + x[v]] += 1.0;
            }
        }
        let mut learned = self.clone();
        for v in 0..self.len() {
            for (r, row) in counts[v].chunks(self.card[v]).enumerate() {
                let total: f64 = row.iter().sum::<f64>() + alpha * self.card[v] as f64;
                ensure!(
                    total > 0.0,
                    "{}: parent configuration {r} never occurs and alpha is 0",
                    self.names[v]
                );
                for (x, c) in row.iter().enumerate() {
                    learned.cpts[v][r * self.card[v] + x] = (c + alpha) / total;
                }
            }
        }
        Ok(learned)
    }
    // ANCHOR_END: learning
}

/// A table over some variables: `values` row-major in `vars` order (last fastest).
#[derive(Clone, Debug)]
struct Factor {
    vars: Vec<usize>,
    card: Vec<usize>,
    values: Vec<f64>,
}

impl Factor {
    fn strides(&self) -> Vec<usize> {
        let mut s = vec![1; self.vars.len()];
        for i in (0..self.vars.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * self.card[i + 1];
        }
        s
    }

    /// The assignment of index `i`, per variable.
    fn unravel(&self, mut i: usize) -> Vec<usize> {
        let mut a = vec![0; self.vars.len()];
        for k in (0..self.vars.len()).rev() {
            a[k] = i % self.card[k];
            i /= self.card[k];
        }
        a
    }

    /// Fixes `var = val` (drops the variable); unchanged if it does not mention it.
    fn reduce(self, var: usize, val: usize) -> Factor {
        let Some(k) = self.vars.iter().position(|&v| v == var) else {
            return self;
        };
        let mut vars = self.vars.clone();
        let mut card = self.card.clone();
        vars.remove(k);
        card.remove(k);
        let values = (0..self.values.len())
            .filter(|&i| self.unravel(i)[k] == val)
            .map(|i| self.values[i])
            .collect();
        Factor { vars, card, values }
    }

    fn product(&self, other: &Factor) -> Factor {
        let mut vars = self.vars.clone();
        let mut card = self.card.clone();
        for (k, &v) in other.vars.iter().enumerate() {
            if !vars.contains(&v) {
                vars.push(v);
                card.push(other.card[k]);
            }
        }
        let out = Factor {
            values: vec![],
            vars,
            card,
        };
        let size: usize = out.card.iter().product();
        let (sa, sb) = (self.strides(), other.strides());
        let values = (0..size)
            .map(|i| {
                let a = out.unravel(i);
                let ia: usize = self
                    .vars
                    .iter()
                    .zip(&sa)
                    .map(|(v, s)| a[out.pos(*v)] * s)
                    .sum();
                let ib: usize = other
                    .vars
                    .iter()
                    .zip(&sb)
                    .map(|(v, s)| a[out.pos(*v)] * s)
                    .sum();
                self.values[ia] * other.values[ib]
            })
            .collect();
        Factor { values, ..out }
    }

    fn pos(&self, v: usize) -> usize {
        self.vars
            .iter()
            .position(|&u| u == v)
            .expect("variable in factor")
    }

    fn sum_out(&self, var: usize) -> Factor {
        let k = self.pos(var);
        let mut vars = self.vars.clone();
        let mut card = self.card.clone();
        vars.remove(k);
        card.remove(k);
        let mut out = Factor {
            values: vec![0.0; card.iter().product()],
            vars,
            card,
        };
        let strides = out.strides();
        for i in 0..self.values.len() {
            let mut a = self.unravel(i);
            a.remove(k);
            let j: usize = a.iter().zip(&strides).map(|(x, s)| x * s).sum();
            out.values[j] += self.values[i];
        }
        out
    }
}

fn normalized(mut p: Vec<f64>) -> Vec<f64> {
    let s: f64 = p.iter().sum();
    assert!(s > 0.0, "the evidence has probability zero");
    p.iter_mut().for_each(|x| *x /= s);
    p
}

// ANCHOR: classic_networks
/// Pearl's sprinkler: Cloudy → Sprinkler, Cloudy → Rain, {Sprinkler, Rain} →
/// WetGrass. Binary variables, 0 = false.
pub fn sprinkler() -> BayesNet {
    let mut n = BayesNet::new();
    let c = n.add_binary("Cloudy", &[], &[0.5]).expect("valid");
    let s = n.add_binary("Sprinkler", &[c], &[0.5, 0.1]).expect("valid");
    let r = n.add_binary("Rain", &[c], &[0.2, 0.8]).expect("valid");
    n.add_binary("WetGrass", &[s, r], &[0.0, 0.9, 0.9, 0.99])
        .expect("valid");
    n
}

/// Pearl's burglar alarm, with Russell and Norvig's numbers: {Burglary, Earthquake} →
/// Alarm → {JohnCalls, MaryCalls}.
pub fn alarm() -> BayesNet {
    let mut n = BayesNet::new();
    let b = n.add_binary("Burglary", &[], &[0.001]).expect("valid");
    let e = n.add_binary("Earthquake", &[], &[0.002]).expect("valid");
    let a = n
        .add_binary("Alarm", &[b, e], &[0.001, 0.29, 0.94, 0.95])
        .expect("valid");
    n.add_binary("JohnCalls", &[a], &[0.05, 0.90])
        .expect("valid");
    n.add_binary("MaryCalls", &[a], &[0.01, 0.70])
        .expect("valid");
    n
}

/// Lauritzen and Spiegelhalter's Asia (chest clinic) network: eight binary variables.
pub fn asia() -> BayesNet {
    let mut n = BayesNet::new();
    let asia = n.add_binary("VisitAsia", &[], &[0.01]).expect("valid");
    let smoke = n.add_binary("Smoker", &[], &[0.5]).expect("valid");
    let tub = n
        .add_binary("Tuberculosis", &[asia], &[0.01, 0.05])
        .expect("valid");
    let lung = n
        .add_binary("LungCancer", &[smoke], &[0.01, 0.1])
        .expect("valid");
    let bronc = n
        .add_binary("Bronchitis", &[smoke], &[0.3, 0.6])
        .expect("valid");
    // Either = Tuberculosis OR LungCancer, a deterministic node.
    let either = n
        .add_binary("Either", &[tub, lung], &[0.0, 1.0, 1.0, 1.0])
        .expect("valid");
    n.add_binary("XRay", &[either], &[0.05, 0.98])
        .expect("valid");
    n.add_binary("Dyspnoea", &[bronc, either], &[0.1, 0.7, 0.8, 0.9])
        .expect("valid");
    n
}
// ANCHOR_END: classic_networks

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elimination_equals_enumeration_on_the_classic_networks() {
        for net in [sprinkler(), alarm(), asia()] {
            let last = net.len() - 1;
            for target in 0..last {
                for val in 0..2 {
                    let ev = [(last, val)];
                    let a = net.query_enumeration(target, &ev);
                    let b = net.query_elimination(target, &ev);
                    for (x, y) in a.iter().zip(&b) {
                        assert!((x - y).abs() < 1e-12, "{x} vs {y}");
                    }
                }
            }
        }
    }

    #[test]
    fn bad_networks_are_errors() {
        let mut n = BayesNet::new();
        assert!(n.add_binary("A", &[3], &[0.5, 0.5]).is_err());
        assert!(n.add("A", 2, &[], vec![0.5, 0.6]).is_err());
        let a = n.add_binary("A", &[], &[0.5]).unwrap();
        assert!(n.add_binary("B", &[a], &[0.5]).is_err());
        assert!(n.fit_cpts(&[vec![2]], 1.0).is_err());
    }
}
