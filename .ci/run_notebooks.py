"""Executes notebooks headless on the evcxr (`rust`) Jupyter kernel.

Each notebook runs in its own folder (so `:dep dlbook = { path = ".." }` and the data
lookup resolve as they do for a reader). A notebook passes when no cell raises and its
outputs include at least one table (Markdown or HTML) and one SVG figure. Executed copies
go to $NOTEBOOK_OUT (default: target-notebooks/), never over the sources, which keep no
outputs.

With `--jobs N` (or $NOTEBOOK_JOBS) notebooks run N at a time. Compiling a cell is
mostly one process on one core, so two kernels keep two cores busy. Each kernel needs
its own evcxr build folder (two kernels in one would overwrite each other's crate): the
first notebook runs alone and brings the shared build folder up to date (the library is
rebuilt there once per change), then that folder is copied for each extra worker, into
a scratch folder beside `notebooks/` (same depth, so `..` still names the book), which
is deleted at the end.

The rest are started longest first, by the times the last run took (kept in the build
folder, which CI keeps between runs): a long notebook started last would otherwise run
on alone while the other kernel sits idle.
"""
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

BUILD = "target-evcxr"  # the evcxr tmpdir of notebooks/evcxr.toml
TIMES = "notebook-seconds.json"  # in BUILD: how long each notebook took last time


def load_times(nb_dir):
    try:
        with open(os.path.join(nb_dir, BUILD, TIMES)) as f:
            return {k: float(v) for k, v in json.load(f).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def save_times(nb_dir, times):
    try:
        os.makedirs(os.path.join(nb_dir, BUILD), exist_ok=True)
        with open(os.path.join(nb_dir, BUILD, TIMES), "w") as f:
            json.dump(times, f, indent=1, sort_keys=True)
    except OSError as e:
        print(f"  (notebook times not kept: {e})", flush=True)


def run(path, out_dir):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="rust",
        timeout=1800,
        startup_timeout=120,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}},
    )
    t = time.time()
    try:
        client.execute()
    except CellExecutionError as e:
        return f"a cell failed:\n{e}"
    finally:
        os.makedirs(out_dir, exist_ok=True)
        nbformat.write(nb, os.path.join(out_dir, os.path.basename(path)))
    mimes = set()
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                return f"error output: {o.get('ename')}: {o.get('evalue')}"
            # evcxr reports a panic (a failed assert!) as text on stderr, not as an
            # error, and runs the next cell: a panic anywhere fails the notebook.
            text = o.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            if o.get("output_type") == "stream" and "panicked at" in text:
                return "a cell panicked:\n" + text.strip()[:2000]
            mimes.update(o.get("data", {}).keys())
    missing = []
    if not mimes & {"text/markdown", "text/html"}:
        missing.append("a table (text/markdown or text/html)")
    if "image/svg+xml" not in mimes:
        missing.append("an SVG figure (image/svg+xml)")
    if missing:
        return "outputs lack " + " and ".join(missing) + f"; got {sorted(mimes)}"
    print(f"  {path}: ok in {time.time() - t:.0f} s, outputs {sorted(mimes)}", flush=True)
    return None


def run_one(path, out_dir):
    print(f"executing {path}", flush=True)
    err = run(path, out_dir)
    if err:
        print(f"  {path}: FAILED: {err}", flush=True)
    return err is None


def worker_folder(nb_dir, k):
    """Worker k's copy of the notebook folder's configuration and evcxr build."""
    folder = os.path.join(os.path.dirname(nb_dir), f"target-nbw{k}")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    shutil.copy(os.path.join(nb_dir, "evcxr.toml"), folder)
    src = os.path.join(nb_dir, BUILD)
    if os.path.isdir(src):
        # `-a` keeps the files' times: with fresh times cargo rebuilds every dependency.
        subprocess.run(["cp", "-a", "--reflink=auto", src, os.path.join(folder, BUILD)], check=True)
    return folder


def run_parallel(paths, out_dir, jobs):
    """The first notebook alone, then the rest on `jobs` kernels, each in its own folder,
    longest first."""
    nb_dir = os.path.dirname(os.path.abspath(paths[0]))
    last = load_times(nb_dir)
    times = dict(last)
    t = time.time()
    passed = int(run_one(paths[0], out_dir))
    times[os.path.basename(paths[0])] = round(time.time() - t, 1)
    rest = sorted(paths[1:], key=lambda p: -last.get(os.path.basename(p), 0.0))
    jobs = min(jobs, len(rest))
    if jobs <= 1:
        for p in rest:
            t = time.time()
            passed += run_one(p, out_dir)
            times[os.path.basename(p)] = round(time.time() - t, 1)
        save_times(nb_dir, times)
        return passed
    folders = [nb_dir]
    todo = queue.Queue()
    for p in rest:
        todo.put(p)
    results = []
    lock = threading.Lock()
    try:
        for k in range(1, jobs):
            try:
                folders.append(worker_folder(nb_dir, k))
            except (OSError, subprocess.CalledProcessError) as e:
                # No room for another copy of the build (it is a few GB): fewer kernels.
                shutil.rmtree(os.path.join(os.path.dirname(nb_dir), f"target-nbw{k}"), ignore_errors=True)
                print(f"  worker {k} not started ({e}); going on with {len(folders)} kernel(s)", flush=True)
                break

        def work(folder):
            while True:
                try:
                    p = todo.get_nowait()
                except queue.Empty:
                    return
                target = os.path.join(folder, os.path.basename(p))
                if os.path.abspath(target) != os.path.abspath(p):
                    shutil.copy(p, target)
                # A child process per notebook: kernels and their event loops stay apart,
                # and its lines arrive whole.
                t = time.time()
                r = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--one", target],
                    env={**os.environ, "NOTEBOOK_OUT": out_dir},
                    capture_output=True,
                    text=True,
                )
                with lock:
                    sys.stdout.write(r.stdout.replace(target, p))
                    sys.stdout.write(r.stderr)
                    sys.stdout.flush()
                    results.append(r.returncode == 0)
                    times[os.path.basename(p)] = round(time.time() - t, 1)

        threads = [threading.Thread(target=work, args=(f,)) for f in folders]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for f in folders[1:]:
            shutil.rmtree(f, ignore_errors=True)
    save_times(nb_dir, times)
    return passed + sum(results)


def main(args):
    out_dir = os.environ.get("NOTEBOOK_OUT", "target-notebooks")
    if args[:1] == ["--one"]:
        return 0 if run_one(args[1], out_dir) else 1
    jobs = int(os.environ.get("NOTEBOOK_JOBS", "1"))
    if args[:1] == ["--jobs"]:
        jobs, args = int(args[1]), args[2:]
    paths = args
    if not paths:
        print("notebooks: 0 passed, 0 failed (no notebook given)")
        return 1
    passed = run_parallel(paths, out_dir, jobs) if jobs > 1 else sum(
        run_one(p, out_dir) for p in paths
    )
    print(f"notebooks: {passed} passed, {len(paths) - passed} failed")
    return 0 if passed == len(paths) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
