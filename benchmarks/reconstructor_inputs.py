"""How fast a reconstructor learns to tell a set of frozen paths apart, from the image pair or from
the original and the difference (`directions.reconstructor.RECONSTRUCTOR_INPUTS`).

The same call as `latentatlas directions score --reconstructor-steps N` (a fresh reconstructor on
frozen paths, shifts of 0.1-0.25 w_std, held-out accuracy on 256 fresh pairs), once per input form
and seed. Prints JSON; with --out, writes it there too.

    python benchmarks/reconstructor_inputs.py --directions faces64_ganspace --steps 300 --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="faces64")
    p.add_argument("--directions", default="faces64_ganspace",
                   help="a directions file, or the name of a bundled one (faces64_ganspace, faces64_supervised, faces64_warped)")
    p.add_argument("--inputs", default="pair,difference")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seeds", default="0")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--out", default="")
    args = p.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    import torch

    from latentatlas.directions.reconstructor import reconstructor_accuracy
    from latentatlas.directions.warped import load_paths
    from latentatlas.inversion.projector import w_statistics
    from latentatlas.io.atomic import write_json
    from latentatlas.models.bundled import WEIGHTS_DIR, load_generator

    if args.threads:
        torch.set_num_threads(args.threads)
    generator, _ = load_generator(args.model, args.device)
    generator.eval().requires_grad_(False)
    bundled = WEIGHTS_DIR / f"{args.directions}.safetensors"
    paths = load_paths(bundled if bundled.is_file() else args.directions, generator.device)
    paths.check_model(generator)
    _, w_std = w_statistics(generator, 5000)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for inputs in args.inputs.split(","):
            t = time.perf_counter()
            r = reconstructor_accuracy(generator, paths.field, len(paths), paths.space, w_std, args.steps, args.batch,
                                       seed=seed, progress=False, inputs=inputs)
            rows.append({"inputs": inputs, "seed": seed, "accuracy": r["accuracy"], "shift_mae": r["shift_mae"],
                         "seconds": round(time.perf_counter() - t, 1)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    device = torch.cuda.get_device_name(0) if generator.device.type == "cuda" else f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    result = {
        "benchmark": "reconstructor_inputs", "device": device, "torch": torch.__version__, "model": args.model,
        "directions": args.directions, "paths": len(paths), "chance": r["chance"], "steps": args.steps, "batch": args.batch,
        "shift_range_w_std": r["shift_range"], "eval_samples": r["eval_samples"], "rows": rows,
    }
    print(json.dumps(result, indent=1))
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
