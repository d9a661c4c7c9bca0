//! Benchmark `svm_speed` (section 12.2): our SVC against scikit-learn's (libsvm) on the
//! same inputs in one run: accuracy, fit and predict CPU-seconds (all threads) and wall
//! seconds. scikit-learn runs by `python3 -c` when it imports; otherwise its rows say why
//! they were skipped.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use ndarray::Array2;

use super::measure::{load_average, process_cpu_seconds};
use super::python;
use crate::data::{self, DataDir, Split};
use crate::experiments::svm_classify::{breast_cancer, mnist};
use crate::report::{col, Format, Report, Table, Value};
use crate::svm::{Gamma, Svc};

const SKLEARN_SCRIPT: &str = include_str!("svm_sklearn.py");

struct Row {
    name: String,
    c: f64,
    data: (Array2<f64>, Vec<usize>, Array2<f64>, Vec<usize>),
    /// What scikit-learn is sent for this row.
    request: serde_json::Value,
}

/// `(accuracy, fit CPU-s, fit wall s, predict CPU-s, predict wall s)`.
type Measured = (f64, f64, f64, f64, f64);

fn ours(row: &Row) -> Result<Measured> {
    let (xtr, ytr, xte, yte) = &row.data;
    let (c0, w0) = (process_cpu_seconds(), Instant::now());
    let model = Svc::rbf(row.c, Gamma::Scale).fit(xtr, ytr)?;
    let (c1, w1) = (process_cpu_seconds(), Instant::now());
    let pred = model.predict(xte);
    let (c2, w2) = (process_cpu_seconds(), Instant::now());
    let acc =
        pred.iter().zip(yte).filter(|(p, t)| p == t).count() as f64 / yte.len() as f64;
    Ok((
        acc,
        c1 - c0,
        (w1 - w0).as_secs_f64(),
        c2 - c1,
        (w2 - w1).as_secs_f64(),
    ))
}

fn sklearn(rows: &[Row]) -> Result<(String, Vec<Measured>)> {
    let req = serde_json::json!({ "rows": rows.iter().map(|r| &r.request).collect::<Vec<_>>() });
    let env = [("OMP_NUM_THREADS", "2".to_string())];
    let text = python::run(SKLEARN_SCRIPT, &[], &env, Some(req.to_string().as_bytes()))?;
    let mut lines = text.lines();
    let head: serde_json::Value =
        serde_json::from_str(lines.next().context("no output")?)?;
    let version = head["version"].as_str().unwrap_or("?").to_string();
    let rows = lines
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            let f = |k: &str| v[k].as_f64().context("a number");
            Ok((
                f("accuracy")?,
                f("fit_cpu")?,
                f("fit_wall")?,
                f("predict_cpu")?,
                f("predict_wall")?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((version, rows))
}

/// Runs the benchmark; `quick` uses 1,000 MNIST images instead of 10,000.
pub fn run(quick: bool, dir: &DataDir, _out: &Path) -> Result<Report> {
    let mut r = Report::new("ch12", "svm_speed", "SVC: ours against scikit-learn's");
    let mut rows = Vec::new();
    let ((xtr, ytr, xte, yte), _) = breast_cancer(dir, 0.25, 0)?;
    let to_json =
        |x: &Array2<f64>| x.rows().into_iter().map(|r| r.to_vec()).collect::<Vec<_>>();
    rows.push(Row {
        name: format!("breast cancer ({}/{})", xtr.nrows(), xte.nrows()),
        c: 1.0,
        request: serde_json::json!({"c": 1.0, "x_train": to_json(&xtr), "y_train": ytr,
            "x_test": to_json(&xte), "y_test": yte}),
        data: (xtr, ytr, xte, yte),
    });
    let n = if quick { 1_000 } else { 10_000 };
    let (tri, trl) = data::mnist_files(Split::Train);
    let (tei, tel) = data::mnist_files(Split::Test);
    let m = mnist(dir, n, n)?;
    for c in [1.0, 10.0] {
        rows.push(Row {
            name: format!("MNIST {n} -> {n}, C = {c}"),
            c,
            request: serde_json::json!({"c": c, "mnist": {
                "train_images": dir.path(tri), "train_labels": dir.path(trl),
                "test_images": dir.path(tei), "test_labels": dir.path(tel),
                "n_train": n, "n_test": n}}),
            data: m.clone(),
        });
    }
    let mut table = Table {
        name: "svm_speed".into(),
        caption: "RBF SVC, gamma = \"scale\"; CPU-seconds over all threads".into(),
        columns: vec![
            col("data", Format::Int),
            col("implementation", Format::Int),
            col("test accuracy", Format::Percent(2)),
            col("fit CPU-s", Format::Fixed(2)),
            col("fit wall s", Format::Fixed(2)),
            col("predict CPU-s", Format::Fixed(2)),
            col("predict wall s", Format::Fixed(2)),
        ],
        rows: vec![],
    };
    let push = |t: &mut Table, name: &str, who: &str, m: Measured| {
        t.rows.push(vec![
            Value::Text(name.into()),
            Value::Text(who.into()),
            Value::Num(m.0),
            Value::Num(m.1),
            Value::Num(m.2),
            Value::Num(m.3),
            Value::Num(m.4),
        ]);
    };
    r.fact("load_before", load_average(), Format::Fixed(1));
    let ours_all = rows.iter().map(ours).collect::<Result<Vec<_>>>()?;
    let theirs = sklearn(&rows);
    for (k, row) in rows.iter().enumerate() {
        push(&mut table, &row.name, "ours", ours_all[k]);
        match &theirs {
            Ok((v, m)) => push(&mut table, &row.name, &format!("scikit-learn {v}"), m[k]),
            Err(e) => {
                let mut cells = vec![
                    Value::Text(row.name.clone()),
                    Value::Text(format!("scikit-learn skipped: {e}")),
                ];
                cells.resize(7, Value::Text("-".into()));
                table.rows.push(cells);
            }
        }
    }
    r.fact("load_after", load_average(), Format::Fixed(1));
    r.tables.push(table);
    Ok(r)
}
