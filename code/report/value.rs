//! How a number is stored (one value, or one per seed) and printed.

use serde::{Deserialize, Serialize};

/// How a number is printed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Fixed number of decimals.
    Fixed(u8),
    /// Multiplied by 100, fixed decimals, followed by ` %`.
    Percent(u8),
    /// Scientific notation with this many decimals in the mantissa (`1.23e-4`).
    Sci(u8),
    /// An integer (rounded).
    Int,
}

impl Format {
    /// Prints `x` in this format. Non-finite values print as `∞`, `-∞` or `NaN`.
    pub fn show(self, x: f64) -> String {
        if x.is_nan() {
            return "NaN".into();
        }
        if x.is_infinite() {
            return if x > 0.0 { "∞".into() } else { "-∞".into() };
        }
        let s = match self {
            Format::Fixed(d) => format!("{:.*}", d as usize, x),
            Format::Percent(d) => format!("{:.*} %", d as usize, 100.0 * x),
            Format::Sci(d) => format!("{:.*e}", d as usize, x),
            Format::Int => format!("{}", x.round() as i64),
        };
        // "-0.00" reads as a sign error; print it as "0.00".
        if s.starts_with('-')
            && s[1..].chars().all(|c| matches!(c, '0' | '.' | ' ' | '%'))
        {
            s[1..].to_string()
        } else {
            s
        }
    }
}

/// A value in a table cell or a fact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// Text, shown as is.
    Text(String),
    /// One number.
    Num(f64),
    /// One measurement per seed; shown as mean ± std.
    Seeds(Vec<f64>),
}

impl Value {
    /// Mean and sample standard deviation of a per-seed value (std 0 for one value).
    pub fn mean_std(values: &[f64]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        (mean, var.sqrt())
    }

    /// Renders the value with `fmt` (ignored for text).
    pub fn show(&self, fmt: Format) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Num(x) => fmt.show(*x),
            Value::Seeds(v) if v.is_empty() => "–".into(),
            Value::Seeds(v) if v.len() == 1 => fmt.show(v[0]),
            Value::Seeds(v) => {
                let (m, s) = Self::mean_std(v);
                let (m, s) = (fmt.show(m), fmt.show(s));
                // "48.1 % ± 0.2 %" reads worse than "48.1 ± 0.2 %".
                match m.strip_suffix(" %") {
                    Some(m) => format!("{m} ± {s}"),
                    None => format!("{m} ± {s}"),
                }
            }
        }
    }

    /// The number this value stands for: itself, or the mean over seeds.
    pub fn number(&self) -> Option<f64> {
        match self {
            Value::Text(_) => None,
            Value::Num(x) => Some(*x),
            Value::Seeds(v) if v.is_empty() => None,
            Value::Seeds(v) => Some(Self::mean_std(v).0),
        }
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Num(x)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

/// A single number quoted in prose (included inline from the generated `.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    /// The number (or per-seed numbers).
    pub value: Value,
    /// How it is printed.
    pub format: Format,
}
