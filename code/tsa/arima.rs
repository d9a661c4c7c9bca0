//! ARIMA and seasonal ARIMA: conditional sum of squares, then exact maximum likelihood
//! through a state-space model and the Kalman filter.
//!
//! **The model.** With the differencing operator
//! $\delta(L) = (1-L)^d(1-L^s)^D$, the differenced series $w_t = \delta(L)y_t$ follows
//! the multiplicative ARMA
//! $\phi(L)\Phi(L^s)w_t = \theta(L)\Theta(L^s)\varepsilon_t$,
//! $\varepsilon_t \sim N(0,\sigma^2)$, where $\phi(L) = 1-\phi_1L-\dots-\phi_pL^p$ and
//! $\theta(L) = 1+\theta_1L+\dots+\theta_qL^q$ (statsmodels' signs). Multiplying the
//! polynomials out gives one ARMA($p+sP$, $q+sQ$).
//!
//! **Conditional sum of squares** sets the pre-sample shocks to zero and minimises
//! $\sum_t e_t^2$ with $e_t = w_t - \sum_i\phi^*_iw_{t-i} - \sum_j\theta^*_je_{t-j}$ from
//! $t = p+sP$: simple, and a good start, but it forgets what the first observations
//! say.
//!
//! **Exact likelihood.** Harvey's state space puts the ARMA in
//! $r = \max(p^*, q^*+1)$ states: $w_t = Z\alpha_t$ with $Z = (1,0,\dots,0)$,
//! $\alpha_{t+1} = T\alpha_t + R\varepsilon_{t+1}$, $T$ the companion matrix with the AR
//! coefficients in its first column and ones above the diagonal,
//! $R = (1,\theta^*_1,\dots,\theta^*_{r-1})^\top$. The filter starts from the stationary
//! distribution: $a_1 = 0$ and $P_1 = \sigma^2\Sigma$ with
//! $\Sigma = T\Sigma T^\top + RR^\top$ (solved by doubling). Each step gives the
//! one-step error $v_t = w_t - Za_t$ with variance $F_t = ZP_tZ^\top$ and
//! $\log L = -\frac12\sum_t(\log 2\pi + \log F_t + v_t^2/F_t)$. This is what statsmodels
//! computes: its diffuse treatment of the $d+sD$ integrated states makes the exact
//! likelihood of $y$ equal the stationary likelihood of $w$, so its `nobs_effective`
//! is the length of $w$.
//!
//! **Constraints.** The optimiser works on unconstrained reals; Monahan's (Jones')
//! transform maps them to partial autocorrelations $r_k = u_k/\sqrt{1+u_k^2}\in(-1,1)$
//! and Durbin-Levinson turns those into the coefficients of a stationary AR polynomial
//! (and, negated, of an invertible MA polynomial). $\sigma^2$ is concentrated out of the
//! likelihood during the search ($\hat\sigma^2 = \frac1n\sum v_t^2/F_t$ where $F_t$ is
//! computed with $\sigma^2 = 1$).
//!
//! **Standard errors.** Two estimates of the covariance of the constrained parameters
//! (including $\sigma^2$), both from central differences of the exact log-likelihood:
//! the inverse of the negative Hessian (`bse`, statsmodels' `cov_type="approx"`) and
//! the inverse outer product of the per-observation scores (`bse_opg`, statsmodels'
//! default `cov_type="opg"`).

use anyhow::{bail, Result};
use serde::Serialize;

use super::optimize::bfgs;
use super::{invert, norm_cdf};

/// The orders of a (seasonal) ARIMA$(p,d,q)\times(P,D,Q)_s$.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Order {
    /// Autoregressive order $p$.
    pub p: usize,
    /// Differences $d$.
    pub d: usize,
    /// Moving-average order $q$.
    pub q: usize,
    /// Seasonal autoregressive order $P$.
    pub sp: usize,
    /// Seasonal differences $D$.
    pub sd: usize,
    /// Seasonal moving-average order $Q$.
    pub sq: usize,
    /// The season $s$ (0 when there is no seasonal part).
    pub s: usize,
}

impl Order {
    /// A non-seasonal ARIMA$(p,d,q)$.
    pub fn new(p: usize, d: usize, q: usize) -> Self {
        Order {
            p,
            d,
            q,
            sp: 0,
            sd: 0,
            sq: 0,
            s: 0,
        }
    }

    /// Adds the seasonal part $(P,D,Q)_s$.
    pub fn seasonal(self, sp: usize, sd: usize, sq: usize, s: usize) -> Self {
        Order {
            sp,
            sd,
            sq,
            s,
            ..self
        }
    }

    /// The number of ARMA coefficients (without $\sigma^2$).
    pub fn n_coef(&self) -> usize {
        self.p + self.q + self.sp + self.sq
    }

    /// statsmodels' parameter names, in its order: `ar.L1`.., `ma.L1`..,
    /// `ar.S.L12`.., `ma.S.L12`.., `sigma2`.
    pub fn param_names(&self) -> Vec<String> {
        let mut v: Vec<String> = (1..=self.p).map(|i| format!("ar.L{i}")).collect();
        v.extend((1..=self.q).map(|i| format!("ma.L{i}")));
        v.extend((1..=self.sp).map(|i| format!("ar.S.L{}", i * self.s)));
        v.extend((1..=self.sq).map(|i| format!("ma.S.L{}", i * self.s)));
        v.push("sigma2".into());
        v
    }

    /// `(p,d,q)` or `(p,d,q)x(P,D,Q)_s`.
    pub fn label(&self) -> String {
        let base = format!("({},{},{})", self.p, self.d, self.q);
        if self.s == 0 {
            base
        } else {
            format!("{base}x({},{},{})_{}", self.sp, self.sd, self.sq, self.s)
        }
    }

    fn check(&self) -> Result<()> {
        let seasonal = self.sp + self.sd + self.sq > 0;
        if seasonal && self.s < 2 {
            bail!(
                "a seasonal part (P,D,Q) = ({},{},{}) needs a season s >= 2, got s = {}",
                self.sp,
                self.sd,
                self.sq,
                self.s
            );
        }
        Ok(())
    }
}

/// How to fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Conditional sum of squares only.
    Css,
    /// Exact maximum likelihood, started from the CSS estimate.
    Ml,
}

/// An unfitted ARIMA: the order and the fitting method.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Arima {
    /// The orders.
    pub order: Order,
    /// CSS or exact ML.
    pub method: Method,
}

/// A fitted ARIMA.
#[derive(Clone, Debug, Serialize)]
pub struct ArimaFit {
    /// The orders fitted.
    pub order: Order,
    /// How.
    pub method: Method,
    /// Names of `params`.
    pub param_names: Vec<String>,
    /// Coefficients in statsmodels' order, then $\sigma^2$.
    pub params: Vec<f64>,
    /// The maximised log-likelihood (exact for ML; Gaussian conditional for CSS).
    pub llf: f64,
    /// $-2\log L + 2k$, $k$ counting $\sigma^2$.
    pub aic: f64,
    /// $-2\log L + k\log n_{\text{eff}}$.
    pub bic: f64,
    /// Observations the likelihood counts: the length of the differenced series (less
    /// the conditioning values for CSS).
    pub nobs_effective: usize,
    /// Standard errors from the numerical Hessian (ML only; empty for CSS).
    pub bse: Vec<f64>,
    /// Standard errors from the outer product of gradients (ML only; empty for CSS).
    pub bse_opg: Vec<f64>,
    /// One-step prediction errors $v_t$ of the differenced series.
    pub residuals: Vec<f64>,
    /// Whether the optimiser met its gradient test.
    pub converged: bool,
    #[serde(skip)]
    y: Vec<f64>,
}

/// A multi-step forecast with its normal prediction intervals.
#[derive(Clone, Debug, Serialize)]
pub struct TsaForecast {
    /// Point forecasts $\hat y_{n+1},\dots,\hat y_{n+h}$.
    pub mean: Vec<f64>,
    /// Their standard errors.
    pub se: Vec<f64>,
    /// Lower ends of the intervals.
    pub lower: Vec<f64>,
    /// Upper ends.
    pub upper: Vec<f64>,
}

/// Coefficients of the constrained model, split by polynomial.
#[derive(Clone, Debug)]
struct Coefs {
    ar: Vec<f64>,
    ma: Vec<f64>,
    sar: Vec<f64>,
    sma: Vec<f64>,
}

impl Coefs {
    fn split(order: &Order, c: &[f64]) -> Coefs {
        let (ar, rest) = c.split_at(order.p);
        let (ma, rest) = rest.split_at(order.q);
        let (sar, sma) = rest.split_at(order.sp);
        Coefs {
            ar: ar.to_vec(),
            ma: ma.to_vec(),
            sar: sar.to_vec(),
            sma: sma.to_vec(),
        }
    }

    /// The multiplied-out $\phi^*$ (as $w_t = \sum\phi^*_iw_{t-i}+\dots$) and $\theta^*$.
    fn full(&self, s: usize) -> (Vec<f64>, Vec<f64>) {
        // Polynomials in L with constant 1: AR as 1 - sum phi L^i, MA as 1 + sum theta L^j.
        let ar = poly_mul(&lag_poly(&self.ar, 1, -1.0), &lag_poly(&self.sar, s, -1.0));
        let ma = poly_mul(&lag_poly(&self.ma, 1, 1.0), &lag_poly(&self.sma, s, 1.0));
        (ar[1..].iter().map(|v| -v).collect(), ma[1..].to_vec())
    }
}

/// $1 + \text{sign}\sum_i c_i L^{i\cdot\text{step}}$ as a coefficient vector.
fn lag_poly(c: &[f64], step: usize, sign: f64) -> Vec<f64> {
    let mut p = vec![0.0; c.len() * step + 1];
    p[0] = 1.0;
    for (i, v) in c.iter().enumerate() {
        p[(i + 1) * step] = sign * v;
    }
    p
}

fn poly_mul(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; a.len() + b.len() - 1];
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            out[i + j] += x * y;
        }
    }
    out
}

/// The differencing polynomial $\delta(L) = (1-L)^d(1-L^s)^D$.
fn diff_poly(order: &Order) -> Vec<f64> {
    let mut p = vec![1.0];
    for _ in 0..order.d {
        p = poly_mul(&p, &[1.0, -1.0]);
    }
    for _ in 0..order.sd {
        p = poly_mul(&p, &lag_poly(&[1.0], order.s, -1.0));
    }
    p
}

/// $w_t = \delta(L)y_t$ for every $t$ with a full history.
fn difference(y: &[f64], delta: &[f64]) -> Vec<f64> {
    let k = delta.len() - 1;
    (k..y.len())
        .map(|t| delta.iter().enumerate().map(|(i, c)| c * y[t - i]).sum())
        .collect()
}

// ANCHOR: constrain
/// Monahan's transform: unconstrained reals to the coefficients of a stationary AR
/// polynomial, through partial autocorrelations and Durbin-Levinson.
pub fn constrain_stationary(u: &[f64]) -> Vec<f64> {
    let mut phi: Vec<f64> = Vec::with_capacity(u.len());
    for (k, x) in u.iter().enumerate() {
        let r = x / (1.0 + x * x).sqrt();
        let prev = phi.clone();
        for j in 0..k {
            phi[j] = prev[j] - r * prev[k - 1 - j];
        }
        phi.push(r);
    }
    phi
}
// ANCHOR_END: constrain

/// Maps the optimiser's unconstrained vector (coefficients only) to constrained
/// coefficients in statsmodels' order.
fn constrain(order: &Order, u: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(u.len());
    let mut at = 0;
    for (len, sign) in [
        (order.p, 1.0),
        (order.q, -1.0),
        (order.sp, 1.0),
        (order.sq, -1.0),
    ] {
        out.extend(
            constrain_stationary(&u[at..at + len])
                .iter()
                .map(|v| sign * v),
        );
        at += len;
    }
    out
}

/// Harvey's state space of an ARMA with $\sigma^2 = 1$.
struct StateSpace {
    r: usize,
    phi: Vec<f64>,
    rvec: Vec<f64>,
}

impl StateSpace {
    fn new(phi: &[f64], theta: &[f64]) -> Self {
        let r = phi.len().max(theta.len() + 1);
        let mut p = phi.to_vec();
        p.resize(r, 0.0);
        let mut rv = vec![1.0];
        rv.extend_from_slice(theta);
        rv.resize(r, 0.0);
        StateSpace {
            r,
            phi: p,
            rvec: rv,
        }
    }

    /// $TM$ for the companion $T$: row $i$ is $\phi_i M_{0\cdot} + M_{i+1,\cdot}$.
    fn t_times(&self, m: &[f64]) -> Vec<f64> {
        let r = self.r;
        let mut out = vec![0.0; r * r];
        for i in 0..r {
            for j in 0..r {
                let below = if i + 1 < r { m[(i + 1) * r + j] } else { 0.0 };
                out[i * r + j] = self.phi[i] * m[j] + below;
            }
        }
        out
    }

    /// The unconditional state covariance $\Sigma = T\Sigma T^\top + RR^\top$ by doubling:
    /// $\Sigma_{k+1} = \Sigma_k + A_k\Sigma_kA_k^\top$, $A_{k+1} = A_k^2$, $A_0 = T$.
    fn stationary_cov(&self) -> Option<Vec<f64>> {
        let r = self.r;
        let mut sigma: Vec<f64> = (0..r * r)
            .map(|ij| self.rvec[ij / r] * self.rvec[ij % r])
            .collect();
        let mut a = self.t_times(&identity(r));
        for _ in 0..80 {
            let asa = matmul_t(&matmul(&a, &sigma, r), &a, r);
            let change = asa.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (s, v) in sigma.iter_mut().zip(&asa) {
                *s += v;
            }
            if change <= 1e-15 * sigma.iter().fold(0.0f64, |m, v| m.max(v.abs())) {
                return Some(sigma);
            }
            a = matmul(&a, &a, r);
        }
        // Only a root on the unit circle stops the doubling from converging.
        None
    }
}

fn identity(r: usize) -> Vec<f64> {
    (0..r * r)
        .map(|ij| if ij / r == ij % r { 1.0 } else { 0.0 })
        .collect()
}

fn matmul(a: &[f64], b: &[f64], r: usize) -> Vec<f64> {
    let mut out = vec![0.0; r * r];
    for i in 0..r {
        for k in 0..r {
            let x = a[i * r + k];
            if x != 0.0 {
                for j in 0..r {
                    out[i * r + j] += x * b[k * r + j];
                }
            }
        }
    }
    out
}

/// $AB^\top$.
fn matmul_t(a: &[f64], b: &[f64], r: usize) -> Vec<f64> {
    let mut out = vec![0.0; r * r];
    for i in 0..r {
        for j in 0..r {
            out[i * r + j] = (0..r).map(|k| a[i * r + k] * b[j * r + k]).sum();
        }
    }
    out
}

/// The Kalman filter's output with $\sigma^2 = 1$.
struct Filtered {
    /// One-step errors $v_t$.
    v: Vec<f64>,
    /// Their variances $F_t$ (unit $\sigma^2$).
    f: Vec<f64>,
    /// $a_{n+1}$ and $P_{n+1}$ after the last observation.
    a: Vec<f64>,
    p: Vec<f64>,
}

// ANCHOR: kalman
/// The Kalman filter of the ARMA `ss` over `w`, from the stationary distribution.
fn kalman(ss: &StateSpace, w: &[f64]) -> Option<Filtered> {
    let r = ss.r;
    let mut p = ss.stationary_cov()?;
    let mut a = vec![0.0; r];
    let (mut vs, mut fs) = (Vec::with_capacity(w.len()), Vec::with_capacity(w.len()));
    for &wt in w {
        // Z picks the first state: v = w - a_0, F = P_00.
        let v = wt - a[0];
        let f = p[0];
        if f.is_nan() || f <= 0.0 {
            return None;
        }
        let k: Vec<f64> = (0..r).map(|i| p[i * r] / f).collect();
        // Update: a += K v, P -= K F K^T.
        for i in 0..r {
            a[i] += k[i] * v;
        }
        let p0: Vec<f64> = p[..r].to_vec();
        for i in 0..r {
            for j in 0..r {
                p[i * r + j] -= k[i] * p0[j];
            }
        }
        // Predict: a <- T a, P <- T P T^T + R R^T.
        let a0 = a[0];
        for i in 0..r {
            a[i] = ss.phi[i] * a0 + if i + 1 < r { a[i + 1] } else { 0.0 };
        }
        let tp = ss.t_times(&p);
        let tpt = ss.t_times(&transpose(&tp, r));
        for i in 0..r {
            for j in 0..r {
                p[i * r + j] = tpt[j * r + i] + ss.rvec[i] * ss.rvec[j];
            }
        }
        vs.push(v);
        fs.push(f);
    }
    Some(Filtered { v: vs, f: fs, a, p })
}
// ANCHOR_END: kalman

fn transpose(m: &[f64], r: usize) -> Vec<f64> {
    (0..r * r).map(|ij| m[(ij % r) * r + ij / r]).collect()
}

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Per-observation exact log-likelihoods at constrained coefficients `c` and `sigma2`.
fn loglike_obs(order: &Order, w: &[f64], c: &[f64], sigma2: f64) -> Option<Vec<f64>> {
    let (phi, theta) = Coefs::split(order, c).full(order.s);
    let kf = kalman(&StateSpace::new(&phi, &theta), w)?;
    Some(
        kf.v.iter()
            .zip(&kf.f)
            .map(|(v, f)| -0.5 * (LN_2PI + (sigma2 * f).ln() + v * v / (sigma2 * f)))
            .collect(),
    )
}

/// The concentrated log-likelihood and $\hat\sigma^2$.
fn concentrated(order: &Order, w: &[f64], c: &[f64]) -> Option<(f64, f64)> {
    let (phi, theta) = Coefs::split(order, c).full(order.s);
    let kf = kalman(&StateSpace::new(&phi, &theta), w)?;
    let n = w.len() as f64;
    let s2 = kf.v.iter().zip(&kf.f).map(|(v, f)| v * v / f).sum::<f64>() / n;
    let sum_ln_f: f64 = kf.f.iter().map(|f| f.ln()).sum();
    Some((-0.5 * (n * LN_2PI + n * s2.ln() + sum_ln_f + n), s2))
}

// ANCHOR: css
/// Conditional residuals: pre-sample shocks zero, the first $p^*$ values conditioned on.
fn css_residuals(order: &Order, w: &[f64], c: &[f64]) -> Vec<f64> {
    let (phi, theta) = Coefs::split(order, c).full(order.s);
    let start = phi.len();
    let mut e = vec![0.0; w.len()];
    for t in start..w.len() {
        let ar: f64 = phi.iter().enumerate().map(|(i, f)| f * w[t - 1 - i]).sum();
        let ma: f64 = theta
            .iter()
            .enumerate()
            .filter(|(j, _)| t > *j)
            .map(|(j, th)| th * e[t - 1 - j])
            .sum();
        e[t] = w[t] - ar - ma;
    }
    e.split_off(start)
}
// ANCHOR_END: css

impl Arima {
    /// An ARIMA of `order` fitted by exact maximum likelihood.
    pub fn new(order: Order) -> Self {
        Arima {
            order,
            method: Method::Ml,
        }
    }

    /// The same model fitted by conditional sum of squares only.
    pub fn css(self) -> Self {
        Arima {
            method: Method::Css,
            ..self
        }
    }

    // ANCHOR: fit
    /// Fits the model to `y` (levels, not differences).
    ///
    /// An error if `y` has non-finite values, if the seasonal part has no season, or if
    /// the differenced series is too short for the parameters.
    pub fn fit(&self, y: &[f64]) -> Result<ArimaFit> {
        let order = self.order;
        order.check()?;
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            bail!(
                "ARIMA: value {i} of the series is {} (fill or drop it first)",
                y[i]
            );
        }
        let w = difference(y, &diff_poly(&order));
        let k = order.n_coef();
        let p_full = order.p + order.s * order.sp;
        if w.len() < p_full + k + 3 {
            bail!(
                "ARIMA{}: {} values leave {} after differencing, too few for {} \
                 coefficients",
                order.label(),
                y.len(),
                w.len(),
                k
            );
        }
        // CSS: minimise log SSR over unconstrained coefficients.
        let css_obj = |u: &[f64]| {
            let e = css_residuals(&order, &w, &constrain(&order, u));
            e.iter().map(|v| v * v).sum::<f64>().ln()
        };
        let start = vec![0.0; k];
        let css = bfgs(css_obj, &start, 1e-8, 500);
        if self.method == Method::Css {
            let c = constrain(&order, &css.x);
            let e = css_residuals(&order, &w, &c);
            let n = e.len() as f64;
            let s2 = e.iter().map(|v| v * v).sum::<f64>() / n;
            let llf = -0.5 * n * (LN_2PI + s2.ln() + 1.0);
            let mut params = c;
            params.push(s2);
            return Ok(self.finish(
                params,
                llf,
                e.len(),
                vec![],
                vec![],
                e,
                css.converged,
                y,
            ));
        }
        // Exact ML from the CSS estimate, with sigma^2 concentrated out.
        let ml_obj = |u: &[f64]| match concentrated(&order, &w, &constrain(&order, u)) {
            Some((llf, _)) => -llf / w.len() as f64,
            None => f64::INFINITY,
        };
        // ARMA likelihoods with several MA terms have several local maxima, and the CSS
        // start can sit in the wrong basin: a few fixed extra starts (zero, and partial
        // autocorrelations of +-0.46 in the transformed space) guard against it.
        let mut best = bfgs(ml_obj, &css.x, 1e-7, 500);
        for u0 in [0.0, 0.5, -0.5] {
            let other = bfgs(ml_obj, &vec![u0; k], 1e-7, 500);
            if other.f < best.f - 1e-10 {
                best = other;
            }
        }
        let c = constrain(&order, &best.x);
        let Some((llf, s2)) = concentrated(&order, &w, &c) else {
            bail!(
                "ARIMA{}: the likelihood is not finite at the optimum",
                order.label()
            );
        };
        let mut params = c;
        params.push(s2);
        let (bse, bse_opg) = standard_errors(&order, &w, &params);
        let resid = {
            let (phi, theta) = Coefs::split(&order, &params[..k]).full(order.s);
            kalman(&StateSpace::new(&phi, &theta), &w)
                .map(|kf| kf.v)
                .unwrap_or_default()
        };
        Ok(self.finish(params, llf, w.len(), bse, bse_opg, resid, best.converged, y))
    }
    // ANCHOR_END: fit

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        params: Vec<f64>,
        llf: f64,
        nobs: usize,
        bse: Vec<f64>,
        bse_opg: Vec<f64>,
        residuals: Vec<f64>,
        converged: bool,
        y: &[f64],
    ) -> ArimaFit {
        let kp = params.len() as f64;
        ArimaFit {
            order: self.order,
            method: self.method,
            param_names: self.order.param_names(),
            llf,
            aic: -2.0 * llf + 2.0 * kp,
            bic: -2.0 * llf + kp * (nobs as f64).ln(),
            nobs_effective: nobs,
            params,
            bse,
            bse_opg,
            residuals,
            converged,
            y: y.to_vec(),
        }
    }
}

// ANCHOR: bse
/// Standard errors from the numerical Hessian and from the outer product of the
/// per-observation scores, both over the constrained parameters (with $\sigma^2$).
fn standard_errors(order: &Order, w: &[f64], params: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let m = params.len();
    let k = m - 1;
    let obs = |x: &[f64]| loglike_obs(order, w, &x[..k], x[k]);
    let total = |x: &[f64]| obs(x).map(|v| v.iter().sum::<f64>()).unwrap_or(f64::NAN);
    let h: Vec<f64> = params.iter().map(|v| 1e-4 * v.abs().max(1e-2)).collect();
    let at = |d: &[(usize, f64)]| {
        let mut x = params.to_vec();
        for &(i, s) in d {
            x[i] += s * h[i];
        }
        x
    };
    let mut hess = vec![0.0; m * m];
    for i in 0..m {
        for j in i..m {
            let v = if i == j {
                (total(&at(&[(i, 1.0)])) - 2.0 * total(params) + total(&at(&[(i, -1.0)])))
                    / (h[i] * h[i])
            } else {
                (total(&at(&[(i, 1.0), (j, 1.0)]))
                    - total(&at(&[(i, 1.0), (j, -1.0)]))
                    - total(&at(&[(i, -1.0), (j, 1.0)]))
                    + total(&at(&[(i, -1.0), (j, -1.0)])))
                    / (4.0 * h[i] * h[j])
            };
            hess[i * m + j] = -v;
            hess[j * m + i] = -v;
        }
    }
    // Per-observation scores by central differences.
    let mut scores = vec![vec![0.0; m]; w.len()];
    for i in 0..m {
        let (Some(up), Some(down)) = (obs(&at(&[(i, 1.0)])), obs(&at(&[(i, -1.0)])))
        else {
            return (vec![f64::NAN; m], vec![f64::NAN; m]);
        };
        for t in 0..w.len() {
            scores[t][i] = (up[t] - down[t]) / (2.0 * h[i]);
        }
    }
    let mut opg = vec![0.0; m * m];
    for s in &scores {
        for i in 0..m {
            for j in 0..m {
                opg[i * m + j] += s[i] * s[j];
            }
        }
    }
    let diag = |a: &[f64]| match invert(a, m) {
        Some(inv) => (0..m).map(|i| inv[i * m + i].max(0.0).sqrt()).collect(),
        None => vec![f64::NAN; m],
    };
    (diag(&hess), diag(&opg))
}
// ANCHOR_END: bse

impl ArimaFit {
    /// The coefficients without $\sigma^2$.
    pub fn coefficients(&self) -> &[f64] {
        &self.params[..self.params.len() - 1]
    }

    /// $\hat\sigma^2$.
    pub fn sigma2(&self) -> f64 {
        self.params[self.params.len() - 1]
    }

    // ANCHOR: forecast
    /// Forecasts `steps` values past the end of the series with central `1 - alpha`
    /// normal prediction intervals.
    ///
    /// The differenced series is forecast from the filter's last state
    /// ($\hat w_{n+j} = ZT^{j-1}a_{n+1}$) and integrated back,
    /// $\hat y_{n+h} = \hat w_{n+h} - \sum_{i\ge1}\delta_i\hat y_{n+h-i}$. The error of
    /// $\hat y_{n+h}$ is $\sum_j\xi_{h-j}(w_{n+j}-\hat w_{n+j})$ with $\xi$ the power
    /// series of $1/\delta(L)$, and each $w$ error is the state error propagated by
    /// $T$ plus the shocks after $n$; its variance follows exactly (no infinite-past
    /// approximation), as statsmodels' filter gives it.
    pub fn forecast(&self, steps: usize, alpha: f64) -> TsaForecast {
        assert!(
            alpha > 0.0 && alpha < 1.0,
            "forecast: alpha = {alpha} must be in (0, 1)"
        );
        let order = self.order;
        let delta = diff_poly(&order);
        let w = difference(&self.y, &delta);
        let s2 = self.sigma2();
        let (phi, theta) = Coefs::split(&order, self.coefficients()).full(order.s);
        let ss = StateSpace::new(&phi, &theta);
        let kf = kalman(&ss, &w).expect("the fitted model filters its own data");
        let r = ss.r;
        // m_i = Z T^i as rows; psi_i = m_i R.
        let mut rows = vec![{
            let mut z = vec![0.0; r];
            z[0] = 1.0;
            z
        }];
        for i in 1..steps {
            let prev = &rows[i - 1];
            // (m T)_0 = sum_k m_k phi_k; (m T)_j = m_{j-1} for j >= 1.
            let next: Vec<f64> = (0..r)
                .map(|j| match j {
                    0 => prev.iter().zip(&ss.phi).map(|(m, f)| m * f).sum(),
                    _ => prev[j - 1],
                })
                .collect();
            rows.push(next);
        }
        let psi: Vec<f64> = rows
            .iter()
            .map(|m| m.iter().zip(&ss.rvec).map(|(a, b)| a * b).sum())
            .collect();
        let mut xi = vec![1.0];
        for kk in 1..steps {
            let v: f64 = (1..delta.len().min(kk + 1))
                .map(|i| -delta[i] * xi[kk - i])
                .sum();
            xi.push(v);
        }
        let what: Vec<f64> = rows
            .iter()
            .map(|m| m.iter().zip(&kf.a).map(|(a, b)| a * b).sum())
            .collect();
        let mut hist = self.y.clone();
        let z = inverse_norm_cdf(1.0 - alpha / 2.0);
        let mut out = TsaForecast {
            mean: vec![],
            se: vec![],
            lower: vec![],
            upper: vec![],
        };
        for h in 1..=steps {
            let t = hist.len();
            let yhat = what[h - 1]
                - (1..delta.len())
                    .map(|i| delta[i] * hist[t - i])
                    .sum::<f64>();
            hist.push(yhat);
            let g: Vec<f64> = (0..r)
                .map(|c| (1..=h).map(|j| xi[h - j] * rows[j - 1][c]).sum())
                .collect();
            let state_var: f64 = (0..r)
                .map(|i| (0..r).map(|j| g[i] * kf.p[i * r + j] * g[j]).sum::<f64>())
                .sum();
            let shock_var: f64 = (1..h)
                .map(|kk| {
                    let b: f64 = (kk + 1..=h).map(|j| xi[h - j] * psi[j - 1 - kk]).sum();
                    b * b
                })
                .sum();
            let se = (s2 * (state_var + shock_var)).sqrt();
            out.mean.push(yhat);
            out.se.push(se);
            out.lower.push(yhat - z * se);
            out.upper.push(yhat + z * se);
        }
        out
    }
    // ANCHOR_END: forecast
}

/// $\Phi^{-1}(p)$ by bisection on [`norm_cdf`]: called a handful of times per forecast.
fn inverse_norm_cdf(p: f64) -> f64 {
    let (mut lo, mut hi) = (-40.0, 40.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if norm_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constrained_coefficients_are_stationary() {
        // An AR(2) is stationary iff |phi2| < 1 and phi2 +- phi1 < 1.
        for u in [[5.0, -3.0], [-10.0, 10.0], [0.3, 0.9]] {
            let c = constrain_stationary(&u);
            assert!(
                c[1].abs() < 1.0 && c[1] + c[0] < 1.0 && c[1] - c[0] < 1.0,
                "{c:?}"
            );
        }
    }

    #[test]
    fn ar1_stationary_variance_is_one_over_one_minus_phi_squared() {
        let ss = StateSpace::new(&[0.6], &[]);
        let s = ss.stationary_cov().unwrap();
        assert!((s[0] - 1.0 / (1.0 - 0.36)).abs() < 1e-12);
    }

    #[test]
    fn seasonal_part_without_season_is_an_error() {
        let y: Vec<f64> = (0..50).map(|t| t as f64).collect();
        assert!(Arima::new(Order::new(0, 1, 1).seasonal(0, 1, 1, 0))
            .fit(&y)
            .is_err());
        assert!(Arima::new(Order::new(1, 0, 0))
            .fit(&[1.0, f64::NAN, 2.0])
            .is_err());
    }
}
