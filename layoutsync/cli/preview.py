"""``layoutsync preview SPEC... --hosts 101,102 [--speaker UID] --out FILE [--sheet N]``.

Draws the layout SPEC gives these hosts: PNG or SVG by FILE's extension (``.png``,
``.svg``), ``-`` for SVG on stdout. ``--sheet N`` draws a contact sheet
instead: one panel per host count 1..N (hosts join in ``--hosts`` order, then
101, 102, ...), hosts that moved since the previous panel marked; several
SPECs give a row each. Tokens are never needed (``env:`` tokens are not read).
Exit 0 on success, 1 on a bad spec, 2 on a usage or file problem.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..apply import Session
from ..plan import Plan
from ..preview import Picture, compile_for_preview, contact_sheet, layout_picture, picture_of_plan
from ..spec import SpecFileError, load_spec
from ._common import UsageProblem, eprint, parse_hosts, parse_uid

#: More panels than this make a sheet nobody can read.
MAX_SHEET = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preview",
        help="draw a layout (SVG or PNG), or a contact sheet of 1..N hosts",
        description="Draw the layout SPEC gives the hosts: the canvas, every region with its "
        "uid, size and zOrder, the speaker, watermarks, overflowed hosts and a footer. PNG or "
        "SVG by the extension of --out ('-': SVG on stdout). Exit 1 on a bad spec, 2 on a "
        "usage or file problem.",
    )
    parser.add_argument(
        "specs", nargs="+", metavar="SPEC", help="layout spec file(s) (several only with --sheet)"
    )
    parser.add_argument(
        "--hosts",
        metavar="UIDS",
        help="comma-separated host uids in join order, e.g. 101,102,103 "
        "(required without --sheet; with it, the first hosts to join)",
    )
    parser.add_argument("--speaker", metavar="UID", help="the active speaker's uid")
    parser.add_argument(
        "--out", required=True, metavar="FILE", help="picture to write (.png or .svg; - for stdout)"
    )
    parser.add_argument(
        "--sheet",
        type=int,
        metavar="N",
        help=f"a contact sheet: one panel per host count 1..N (N <= {MAX_SHEET})",
    )
    parser.add_argument(
        "--columns", type=int, default=6, metavar="C", help="sheet panels per line (default 6)"
    )
    parser.add_argument(
        "--zoom",
        type=float,
        default=1.0,
        metavar="Z",
        help="PNG only: scale every length (2 for high-density screens; default 1)",
    )
    parser.add_argument("--title", help="a title above a single layout (default: instanceId)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        picture, described = _picture(args)
    except UsageProblem as exc:
        eprint(f"error: {exc}")
        return 2
    except SpecFileError as exc:
        eprint(f"error: {exc}")
        return 2
    if args.out == "-":
        sys.stdout.write(picture.svg())
        eprint(f"{described}; SVG {picture.width}x{picture.height} on stdout")
        return 0
    try:
        picture.save(args.out, zoom=args.zoom)
    except OSError as exc:
        eprint(f"error: cannot write {args.out}: {exc}")
        return 2
    kind = "PNG" if Path(args.out).suffix.lower() == ".png" else "SVG"
    width, height = picture.width, picture.height
    if kind == "PNG" and args.zoom != 1:
        width, height = round(width * args.zoom), round(height * args.zoom)
    eprint(f"{described}; {kind} {width}x{height} written to {args.out}")
    return 0


def _picture(args: argparse.Namespace) -> tuple[Picture, str]:
    if args.out != "-" and Path(args.out).suffix.lower() not in (".png", ".svg"):
        raise UsageProblem(f"--out: {args.out!r} must end in .png or .svg (or be - for stdout)")
    if not 0.25 <= args.zoom <= 4:
        raise UsageProblem(f"--zoom: {args.zoom:g} is outside 0.25..4")
    hosts = parse_hosts(args.hosts) if args.hosts is not None else None
    speaker = None if args.speaker is None else parse_uid(args.speaker, "--speaker")
    if args.sheet is not None:
        if not 1 <= args.sheet <= MAX_SHEET:
            raise UsageProblem(f"--sheet: {args.sheet} is outside 1..{MAX_SHEET}")
        if not 1 <= args.columns <= 16:
            raise UsageProblem(f"--columns: {args.columns} is outside 1..16")
        specs = [load_spec(path) for path in args.specs]
        picture = contact_sheet(
            specs, args.sheet, hosts=hosts, speaker=speaker, columns=args.columns
        )
        return picture, f"contact sheet of 1..{args.sheet} hosts, {len(specs)} spec(s)"
    if len(args.specs) > 1:
        raise UsageProblem("several SPECs make a contact sheet: add --sheet N")
    if hosts is None:
        raise UsageProblem("--hosts is required without --sheet (e.g. --hosts 101,102,103)")
    spec = load_spec(args.specs[0])
    compiled = compile_for_preview(spec, hosts, speaker)
    template = "audio only" if spec.audio_only else spec.layout.template
    count = len(compiled.hosts)
    title = args.title or (
        f"{spec.instance_id} · {count} host{'s' if count != 1 else ''}"
        + (f", speaker {compiled.speaker}" if compiled.speaker is not None else "")
    )
    picture = layout_picture(
        compiled,
        template=template,
        title=title,
        canvas=(spec.canvas.width, spec.canvas.height, spec.canvas.color),
    )
    shown = ",".join(map(str, compiled.visible)) or "none"
    described = f"visible {shown}"
    if compiled.overflowed:
        described += f"; overflowed {','.join(map(str, compiled.overflowed))}"
    return picture, described


def write_plan_preview(path: str, session: Session, plan: Plan) -> int:
    """``plan --preview FILE``: the live layout beside the desired one; 2 when unwritable."""
    picture = picture_of_plan(session, plan)
    try:
        if path == "-":
            sys.stdout.write(picture.svg())
        else:
            picture.save(path)
    except OSError as exc:
        eprint(f"error: cannot write {path}: {exc}")
        return 2
    if path != "-":
        eprint(f"before -> after picture written to {path}")
    return 0
