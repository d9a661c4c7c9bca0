"""Executes notebooks headless on the evcxr (`rust`) Jupyter kernel.

Each notebook runs in its own folder (so `:dep dlbook = { path = ".." }` and the data
lookup resolve as they do for a reader). A notebook passes when no cell raises and its
outputs include at least one table (Markdown or HTML) and one SVG figure. Executed copies
go to $NOTEBOOK_OUT (default: target-notebooks/), never over the sources, which keep no
outputs.
"""
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


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
            mimes.update(o.get("data", {}).keys())
    missing = []
    if not mimes & {"text/markdown", "text/html"}:
        missing.append("a table (text/markdown or text/html)")
    if "image/svg+xml" not in mimes:
        missing.append("an SVG figure (image/svg+xml)")
    if missing:
        return "outputs lack " + " and ".join(missing) + f"; got {sorted(mimes)}"
    print(f"  {path}: ok in {time.time() - t:.0f} s, outputs {sorted(mimes)}")
    return None


def main(paths):
    out_dir = os.environ.get("NOTEBOOK_OUT", "target-notebooks")
    failed = 0
    for p in paths:
        print(f"executing {p}", flush=True)
        err = run(p, out_dir)
        if err:
            failed += 1
            print(f"  {p}: FAILED: {err}")
    print(f"notebooks: {len(paths) - failed} passed, {failed} failed")
    return 1 if failed or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
