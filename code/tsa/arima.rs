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
//! **A mean or a drift.** With `Trend::Const` ($d + D = 0$) or `Trend::Drift`
//! ($d + D = 1$) the model is a regression with ARIMA errors, as statsmodels' `ARIMA`
//! with `trend="c"` or `"t"` writes it: $y_t = \beta t^k + u_t$ with $k = d + D$ and $u_t$
//! the ARIMA above. Differencing turns the trend into a constant,
//! $w_t = \mu + \delta(L)u_t$ with $\mu = \beta\,k!\,s^D$ ($\mu = \beta$ for a constant
//! or a drift without a seasonal difference), so $w_t - \mu$ is the ARMA. The filter is
//! linear in the data: filtering $w$ and a column of ones with the same gains gives
//! errors $v_t(w) - \mu\,v_t(1)$, so for given ARMA coefficients the maximum-likelihood
//! $\hat\mu$ is the generalised-least-squares estimate
//! $\sum_t v_t(w)v_t(1)/F_t \big/ \sum_t v_t(1)^2/F_t$. $\mu$ is concentrated out like
//! $\sigma^2$, and the optimiser searches the ARMA coefficients alone.
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

/// The deterministic part of the model, statsmodels' `trend`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    /// None: the differenced series has mean zero (statsmodels' `"n"`).
    #[default]
    None,
    /// A constant mean $\beta$, for $d + D = 0$ (statsmodels' `"c"`, parameter `const`).
    Const,
    /// A linear trend $\beta t$, for $d + D = 1$: after differencing, a drift of $\beta$
    /// per step ($s\beta$ per season with a seasonal difference); statsmodels' `"t"`,
    /// whose parameter it names `x1`.
    Drift,
}

impl Trend {
    /// The parameter's name, or `None` for no trend.
    pub fn name(&self) -> Option<&'static str> {
        match self {
            Trend::None => None,
            Trend::Const => Some("const"),
            Trend::Drift => Some("drift"),
        }
    }

    /// How many parameters the trend adds (0 or 1).
    pub fn n_params(&self) -> usize {
        usize::from(*self != Trend::None)
    }

    /// The mean of the differenced series per unit of the trend's coefficient,
    /// $k!\,s^D$ (checked by [`Trend::check`] to be a trend that differencing turns into
    /// a constant).
    fn scale(&self, order: &Order) -> f64 {
        match self {
            Trend::None => 0.0,
            Trend::Const | Trend::Drift => (order.s.max(1) as f64).powi(order.sd as i32),
        }
    }

    fn check(&self, order: &Order) -> Result<()> {
        let k = order.d + order.sd;
        match (self, k) {
            (Trend::None, _) | (Trend::Const, 0) | (Trend::Drift, 1) => Ok(()),
            (Trend::Const, _) => bail!(
                "ARIMA{}: a constant is removed by the {k} difference(s); use a drift \
                 (d + D = 1) or no trend",
                order.label()
            ),
            (Trend::Drift, 0) => bail!(
                "ARIMA{}: a drift needs one difference (d + D = 1); with none, use a \
                 constant",
                order.label()
            ),
            (Trend::Drift, _) => bail!(
                "ARIMA{}: {k} differences turn a drift into zero; a trend of order {k} is \
                 not supported",
                order.label()
            ),
        }
    }
}

/// An unfitted ARIMA: the order, the trend and the fitting method.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Arima {
    /// The orders.
    pub order: Order,
    /// The trend (none unless asked for).
    pub trend: Trend,
    /// CSS or exact ML.
    pub method: Method,
}

/// A fitted ARIMA.
#[derive(Clone, Debug, Serialize)]
pub struct ArimaFit {
    /// The orders fitted.
    pub order: Order,
    /// The trend fitted.
    pub trend: Trend,
    /// How.
    pub method: Method,
    /// Names of `params`.
    pub param_names: Vec<String>,
    /// The trend's coefficient (if any), the ARMA coefficients in statsmodels' order,
    /// then $\sigma^2$.
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
    /// The one-step errors of a column of ones through the same filter (empty unless
    /// asked for): the regressor of the mean.
    v_ones: Vec<f64>,
    /// $a_{n+1}$ and $P_{n+1}$ after the last observation.
    a: Vec<f64>,
    p: Vec<f64>,
}

/// One filter step of the state mean: $a \leftarrow T(a + Kv)$, in place.
fn advance_state(a: &mut [f64], k: &[f64], v: f64, phi: &[f64]) {
    let r = a.len();
    let a0 = a[0] + k[0] * v;
    for i in 0..r {
        let below = if i + 1 < r {
            a[i + 1] + k[i + 1] * v
        } else {
            0.0
        };
        a[i] = phi[i] * a0 + below;
    }
}

// ANCHOR: kalman
/// The Kalman filter of the ARMA `ss` over `w`, from the stationary distribution; with
/// `ones`, a column of ones goes through the same filter beside `w`.
///
/// $Z$ picks the first state, so $v_t = w_t - a_{t,0}$, $F_t = P_{t,00}$ and the gain is
/// the first column of $P_t$ over $F_t$. The updated covariance
/// $M = P - P_{\cdot0}P_{0\cdot}/F$ has a zero first row and column, so the companion
/// $T$ makes the prediction a shift: $P_{t+1,ij} = M_{i+1,j+1} + R_iR_j$, $O(r^2)$ with
/// no matrix product. $P_t$ does not depend on the data and converges; once a step
/// changes it by less than $10^{-13}F_t$ the filter stops updating it (statsmodels'
/// filter does the same), and each later step costs $O(r)$.
fn kalman(ss: &StateSpace, w: &[f64], ones: bool) -> Option<Filtered> {
    let r = ss.r;
    let mut p = ss.stationary_cov()?;
    let mut next = vec![0.0; r * r];
    let mut k = vec![0.0; r];
    let mut a = vec![0.0; r];
    let mut a1 = vec![0.0; if ones { r } else { 0 }];
    let n = w.len();
    let (mut vs, mut fs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut v1s = Vec::with_capacity(if ones { n } else { 0 });
    let mut steady = false;
    for &wt in w {
        let f = p[0];
        if f.is_nan() || f <= 0.0 {
            return None;
        }
        for i in 0..r {
            k[i] = p[i * r] / f;
        }
        let v = wt - a[0];
        advance_state(&mut a, &k, v, &ss.phi);
        if ones {
            let v1 = 1.0 - a1[0];
            advance_state(&mut a1, &k, v1, &ss.phi);
            v1s.push(v1);
        }
        vs.push(v);
        fs.push(f);
        if !steady {
            // P is symmetric: fill the upper triangle and mirror it.
            let mut change = 0.0f64;
            for i in 0..r {
                for j in i..r {
                    // j >= i, so j + 1 < r implies i + 1 < r.
                    let m = if j + 1 < r {
                        p[(i + 1) * r + j + 1] - k[i + 1] * p[j + 1]
                    } else {
                        0.0
                    };
                    let val = m + ss.rvec[i] * ss.rvec[j];
                    change = change.max((val - p[i * r + j]).abs());
                    next[i * r + j] = val;
                    next[j * r + i] = val;
                }
            }
            std::mem::swap(&mut p, &mut next);
            steady = change <= 1e-13 * f;
        }
    }
    Some(Filtered {
        v: vs,
        f: fs,
        v_ones: v1s,
        a,
        p,
    })
}
// ANCHOR_END: kalman

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Per-observation exact log-likelihoods of `w - mu` at constrained ARMA coefficients
/// `c` and `sigma2`.
fn loglike_obs(
    order: &Order,
    w: &[f64],
    mu: f64,
    c: &[f64],
    sigma2: f64,
) -> Option<Vec<f64>> {
    let (phi, theta) = Coefs::split(order, c).full(order.s);
    let centred: Vec<f64> = w.iter().map(|v| v - mu).collect();
    let kf = kalman(&StateSpace::new(&phi, &theta), &centred, false)?;
    Some(
        kf.v.iter()
            .zip(&kf.f)
            .map(|(v, f)| -0.5 * (LN_2PI + (sigma2 * f).ln() + v * v / (sigma2 * f)))
            .collect(),
    )
}

// ANCHOR: trend
/// The generalised-least-squares mean $\sum v\,v_1/F \big/ \sum v_1^2/F$ from the errors
/// of the data and of a column of ones (plain least squares when every `f` is 1).
fn gls_mean(v: &[f64], v_ones: &[f64], f: impl Iterator<Item = f64>) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for ((a, b), f) in v.iter().zip(v_ones).zip(f) {
        num += a * b / f;
        den += b * b / f;
    }
    num / den
}

/// The concentrated log-likelihood, $\hat\sigma^2$ and $\hat\mu$ (0 without a mean).
fn concentrated(
    order: &Order,
    w: &[f64],
    mean: bool,
    c: &[f64],
) -> Option<(f64, f64, f64)> {
    let (phi, theta) = Coefs::split(order, c).full(order.s);
    let kf = kalman(&StateSpace::new(&phi, &theta), w, mean)?;
    let mu = if mean {
        gls_mean(&kf.v, &kf.v_ones, kf.f.iter().copied())
    } else {
        0.0
    };
    let n = w.len() as f64;
    let s2 = if mean {
        kf.v.iter()
            .zip(&kf.v_ones)
            .zip(&kf.f)
            .map(|((v, v1), f)| (v - mu * v1).powi(2) / f)
            .sum::<f64>()
            / n
    } else {
        kf.v.iter().zip(&kf.f).map(|(v, f)| v * v / f).sum::<f64>() / n
    };
    let sum_ln_f: f64 = kf.f.iter().map(|f| f.ln()).sum();
    Some((-0.5 * (n * LN_2PI + n * s2.ln() + sum_ln_f + n), s2, mu))
}
// ANCHOR_END: trend

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

/// The CSS residuals of `w` less its least-squares mean (the recursion is linear in the
/// data, so the residuals of `w - mu` are those of `w` less `mu` times those of ones),
/// and that mean (0 without one).
fn css_residuals_centred(
    order: &Order,
    w: &[f64],
    mean: bool,
    c: &[f64],
) -> (Vec<f64>, f64) {
    let e = css_residuals(order, w, c);
    if !mean {
        return (e, 0.0);
    }
    let e1 = css_residuals(order, &vec![1.0; w.len()], c);
    let mu = gls_mean(&e, &e1, std::iter::repeat(1.0));
    (e.iter().zip(&e1).map(|(a, b)| a - mu * b).collect(), mu)
}

impl Arima {
    /// An ARIMA of `order` without a trend, fitted by exact maximum likelihood.
    pub fn new(order: Order) -> Self {
        Arima {
            order,
            trend: Trend::None,
            method: Method::Ml,
        }
    }

    /// The same model with a trend: a constant (for $d + D = 0$) or a drift (for
    /// $d + D = 1$); [`Arima::fit`] refuses other combinations.
    pub fn with_trend(self, trend: Trend) -> Self {
        Arima { trend, ..self }
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
    /// An error if `y` has non-finite values, if the seasonal part has no season, if the
    /// trend does not suit the differences, or if the differenced series is too short
    /// for the parameters.
    pub fn fit(&self, y: &[f64]) -> Result<ArimaFit> {
        let order = self.order;
        order.check()?;
        self.trend.check(&order)?;
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            bail!(
                "ARIMA: value {i} of the series is {} (fill or drop it first)",
                y[i]
            );
        }
        let w = difference(y, &diff_poly(&order));
        let k = order.n_coef();
        let mean = self.trend != Trend::None;
        let n_par = k + self.trend.n_params();
        let p_full = order.p + order.s * order.sp;
        if w.len() < p_full + n_par + 3 {
            bail!(
                "ARIMA{}: {} values leave {} after differencing, too few for {} \
                 coefficients",
                order.label(),
                y.len(),
                w.len(),
                n_par
            );
        }
        // CSS: minimise log SSR over unconstrained coefficients (the mean concentrated).
        let css_obj = |u: &[f64]| {
            let (e, _) = css_residuals_centred(&order, &w, mean, &constrain(&order, u));
            e.iter().map(|v| v * v).sum::<f64>().ln()
        };
        let start = vec![0.0; k];
        let css = bfgs(css_obj, &start, 1e-8, 500);
        let scale = self.trend.scale(&order);
        // The parameter vector: the trend's coefficient (if any), the ARMA ones, sigma^2.
        let params_of = |mu: f64, c: Vec<f64>, s2: f64| {
            let mut v = if mean { vec![mu / scale] } else { vec![] };
            v.extend(c);
            v.push(s2);
            v
        };
        if self.method == Method::Css {
            let c = constrain(&order, &css.x);
            let (e, mu) = css_residuals_centred(&order, &w, mean, &c);
            let n = e.len() as f64;
            let s2 = e.iter().map(|v| v * v).sum::<f64>() / n;
            let llf = -0.5 * n * (LN_2PI + s2.ln() + 1.0);
            return Ok(self.finish(
                params_of(mu, c, s2),
                llf,
                e.len(),
                (vec![], vec![]),
                e,
                css.converged,
                y,
            ));
        }
        // Exact ML from the CSS estimate, with sigma^2 (and the mean) concentrated out.
        let ml_obj =
            |u: &[f64]| match concentrated(&order, &w, mean, &constrain(&order, u)) {
                Some((llf, _, _)) => -llf / w.len() as f64,
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
        let Some((llf, s2, mu)) = concentrated(&order, &w, mean, &c) else {
            bail!(
                "ARIMA{}: the likelihood is not finite at the optimum",
                order.label()
            );
        };
        let params = params_of(mu, c, s2);
        let errors = standard_errors(&order, self.trend, &w, &params);
        let resid = {
            let (phi, theta) =
                Coefs::split(&order, &params[n_par - k..n_par]).full(order.s);
            let centred: Vec<f64> = w.iter().map(|v| v - mu).collect();
            kalman(&StateSpace::new(&phi, &theta), &centred, false)
                .map(|kf| kf.v)
                .unwrap_or_default()
        };
        Ok(self.finish(params, llf, w.len(), errors, resid, best.converged, y))
    }
    // ANCHOR_END: fit

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        params: Vec<f64>,
        llf: f64,
        nobs: usize,
        (bse, bse_opg): (Vec<f64>, Vec<f64>),
        residuals: Vec<f64>,
        converged: bool,
        y: &[f64],
    ) -> ArimaFit {
        let kp = params.len() as f64;
        let mut param_names: Vec<String> =
            self.trend.name().map(String::from).into_iter().collect();
        param_names.extend(self.order.param_names());
        ArimaFit {
            order: self.order,
            trend: self.trend,
            method: self.method,
            param_names,
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
/// per-observation scores, both over the constrained parameters (with $\sigma^2$, and the
/// trend's coefficient if there is one).
fn standard_errors(
    order: &Order,
    trend: Trend,
    w: &[f64],
    params: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let m = params.len();
    let t = trend.n_params();
    let scale = trend.scale(order);
    let obs = |x: &[f64]| {
        let mu = if t == 1 { x[0] * scale } else { 0.0 };
        loglike_obs(order, w, mu, &x[t..m - 1], x[m - 1])
    };
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
    let f0 = total(params);
    for i in 0..m {
        for j in i..m {
            let v = if i == j {
                (total(&at(&[(i, 1.0)])) - 2.0 * f0 + total(&at(&[(i, -1.0)])))
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
    /// The coefficients without $\sigma^2$ (the trend's first, if there is one).
    pub fn coefficients(&self) -> &[f64] {
        &self.params[..self.params.len() - 1]
    }

    /// The ARMA coefficients alone.
    fn arma_coefficients(&self) -> &[f64] {
        &self.coefficients()[self.trend.n_params()..]
    }

    /// The mean of the differenced series implied by the trend (0 without one).
    pub fn mean_of_differences(&self) -> f64 {
        match self.trend {
            Trend::None => 0.0,
            _ => self.params[0] * self.trend.scale(&self.order),
        }
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
    /// ($\hat w_{n+j} = \mu + ZT^{j-1}a_{n+1}$, the filter run on $w - \mu$) and
    /// integrated back,
    /// $\hat y_{n+h} = \hat w_{n+h} - \sum_{i\ge1}\delta_i\hat y_{n+h-i}$. The error of
    /// $\hat y_{n+h}$ is $\sum_j\xi_{h-j}(w_{n+j}-\hat w_{n+j})$ with $\xi$ the power
    /// series of $1/\delta(L)$, and each $w$ error is the state error propagated by
    /// $T$ plus the shocks after $n$; its variance follows exactly (no infinite-past
    /// approximation), as statsmodels' filter gives it. Like statsmodels, the intervals
    /// treat the estimated parameters (the mean too) as known.
    pub fn forecast(&self, steps: usize, alpha: f64) -> TsaForecast {
        assert!(
            alpha > 0.0 && alpha < 1.0,
            "forecast: alpha = {alpha} must be in (0, 1)"
        );
        let order = self.order;
        let delta = diff_poly(&order);
        let mu = self.mean_of_differences();
        let w: Vec<f64> = difference(&self.y, &delta).iter().map(|v| v - mu).collect();
        let s2 = self.sigma2();
        let (phi, theta) = Coefs::split(&order, self.arma_coefficients()).full(order.s);
        let ss = StateSpace::new(&phi, &theta);
        let kf = kalman(&ss, &w, false).expect("the fitted model filters its own data");
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
            .map(|m| mu + m.iter().zip(&kf.a).map(|(a, b)| a * b).sum::<f64>())
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
