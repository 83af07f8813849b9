"""``data synth``: every workload's synthetic twin, in its real format."""
from __future__ import annotations

import argparse
from pathlib import Path



def add_verbs(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("data", help="data utilities")
    data = s.add_subparsers(dest="data_verb", required=True)
    s = data.add_parser("synth", help="write synthetic volumes in a real layout")
    s.add_argument("kind", choices=["knee", "acdc", "cine", "sinogram", "ixi"],
                   help="knee: fastMRI / coursework HDF5; acdc: PNG image / mask folders; cine: cine.npz [N, T, X, Y]; "
                        "sinogram: raw uint16 [TOF, Slice, W, L] clean / noisy pairs and a bad-block mask.npy; "
                        "ixi: '<id> - T1.pt' / '<id> - T2.pt' brain phantoms")
    s.add_argument("out")
    s.add_argument("--volumes", type=int, default=8)
    s.add_argument("--slices", type=int, default=16)
    s.add_argument("--shape", type=int, nargs=2, default=[640, 368], metavar=("H", "W"))
    s.add_argument("--recon-shape", type=int, nargs=2, default=[320, 320], metavar=("H", "W"))
    s.add_argument("--layout", choices=["fastmri", "nc2019"], default="fastmri")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--train", type=int, default=60, help="acdc: training images; sinogram: training files")
    s.add_argument("--val", type=int, default=12, help="acdc: validation images; sinogram: validation files")
    s.add_argument("--test", type=int, default=8, help="acdc: test images (no masks); sinogram: test files")
    s.add_argument("--size", type=int, help="acdc, cine, ixi: image side (default 96, 192, 64); sinogram: radial bins L (64)")
    s.add_argument("--tof", type=int, default=2, help="sinogram: TOF bins")
    s.add_argument("--subjects", type=int, default=577, help="ixi: subjects with both contrasts")
    s.add_argument("--incomplete", type=int, default=2, help="ixi: further subjects with T1 only")
    s.add_argument("--angles", type=int, default=50, help="sinogram: projection angles W")
    s.add_argument("--counts", type=float, default=100.0, help="sinogram: expected counts in the brightest bin")
    s.add_argument("--bad-blocks", type=int, default=3, help="sinogram: dead detector blocks in the mask")
    s.add_argument("--cases", type=int, default=200, help="cine: cases")
    s.add_argument("--frames", type=int, default=20, help="cine: frames per case")
    s.set_defaults(fn=cmd_synth)


def cmd_synth(args) -> int:
    if args.kind == "cine":
        from mrihpc.workloads.cine.synth import generate as generate_cine

        path = generate_cine(Path(args.out), args.cases, args.frames, args.size or 192, args.seed)
        print(f"wrote {args.cases} beating-heart cases of {args.frames} frames ([N, T, X, Y] as 'dataset') to {path}")
        return 0
    if args.kind == "acdc":
        from mrihpc.workloads.segmentation.synth import generate as generate_acdc

        out = generate_acdc(Path(args.out), args.train, args.val, args.test, args.size or 96, args.seed)
        print(f"wrote {args.train} train, {args.val} val and {args.test} test cardiac phantoms (PNG) under {out}")
        return 0
    if args.kind == "ixi":
        from mrihpc.workloads.synthesis.synth import generate as generate_ixi

        out = generate_ixi(Path(args.out), args.subjects, args.incomplete, args.size or 64, args.seed)
        print(f"wrote {args.subjects} subjects ('<id> - T1.pt' and '<id> - T2.pt') and {args.incomplete} "
              f"with T1 only under {out}")
        return 0
    if args.kind == "sinogram":
        from mrihpc.workloads.sinogram.synth import generate as generate_sino

        out = generate_sino(Path(args.out), args.train, args.val, args.test, args.tof, args.slices,
                            args.angles, args.size or 64, args.counts, args.bad_blocks, args.seed)
        print(f"wrote {args.train} train, {args.val} val and {args.test} test raw uint16 sinograms "
              f"[{args.tof}, {args.slices}, {args.angles}, {args.size or 64}] and mask.npy under {out}")
        return 0
    from mrihpc.data.synth import generate

    out = generate(Path(args.out), args.volumes, args.slices, tuple(args.shape), tuple(args.recon_shape),
                   args.layout, args.seed)
    print(f"wrote {args.volumes} {args.layout} volumes under {out}")
    return 0
