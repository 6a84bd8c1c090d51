#!/usr/bin/env python3
"""Static checks of the shardgate Dockerfile, runnable without a Docker engine.

    python3 scripts/check-dockerfile.py [--dockerfile PATH] [--root DIR]

The build context is the repository root (DIR, default: this script's repository). Checks:

- every COPY/ADD source of the build context exists and is not excluded by .dockerignore;
  every COPY --from names an earlier stage;
- the package built with `cargo build -p NAME` is a member of the workspace and has a binary
  of that name, `--locked` is used, and Cargo.lock is copied before that build;
- dependency caching is sound: every workspace member's Cargo.toml is copied before the first
  build, each explicitly declared target of a member (e.g. sharding's [[bench]]) gets a
  stand-in when only the manifests are copied, and the sources are touched before the real
  build (COPY keeps old modification times, which would make cargo keep the stand-ins);
- the build and runtime stages use the same Debian release (the binary links its glibc);
- the runtime (last) stage runs as a non-root USER, has a HEALTHCHECK on /ready (and installs
  curl if the check uses it), EXPOSEs 8080, copies config/ and runs `shardgate`;
- .dockerignore excludes target/, .cluster/, .tools/ and .venv/.

Standard library only (Python >= 3.11 for tomllib). Exits 1 listing every failure.
scripts/check-compose.py imports the parsing helpers from this file.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- Dockerfile parsing


@dataclass
class Instr:
    line: int  # 1-based line of the instruction's first line
    keyword: str  # upper case
    args: str  # the rest, continuation lines joined
    stage: int = -1  # index of the stage it belongs to (-1: before the first FROM)

    def __str__(self) -> str:
        args = self.args if len(self.args) <= 70 else self.args[:67] + "..."
        return f"line {self.line}: {self.keyword} {args}"


@dataclass
class Stage:
    index: int
    image: str
    name: str | None
    line: int
    instrs: list[Instr] = field(default_factory=list)


def parse_dockerfile(path: Path) -> tuple[list[Instr], list[Stage]]:
    """Instructions (comments and line continuations handled) and stages."""
    text = path.read_text()
    escape = "\\"
    lines = text.splitlines()
    # Parser directives: `# escape=`` ` at the top.
    for raw in lines:
        m = re.match(r"^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$", raw)
        if not m:
            break
        if m.group(1).lower() == "escape":
            escape = m.group(2)
    instrs: list[Instr] = []
    buf: list[str] = []
    start = 0
    for i, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by Docker
        if not buf:
            start = i
        if stripped.endswith(escape):
            buf.append(stripped[: -len(escape)])
            continue
        buf.append(stripped)
        joined = " ".join(b.strip() for b in buf if b.strip())
        buf = []
        kw, _, rest = joined.partition(" ")
        instrs.append(Instr(start, kw.upper(), rest.strip()))
    if buf:
        joined = " ".join(b.strip() for b in buf if b.strip())
        kw, _, rest = joined.partition(" ")
        instrs.append(Instr(start, kw.upper(), rest.strip()))
    stages: list[Stage] = []
    for ins in instrs:
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = None
            if len(words) >= 3 and words[1].lower() == "as":
                name = words[2]
            stages.append(Stage(len(stages), words[0] if words else "", name, ins.line))
        ins.stage = len(stages) - 1
        if stages:
            stages[-1].instrs.append(ins)
    return instrs, stages


def split_flags(args: str) -> tuple[dict[str, str], list[str]]:
    """`--from=build --chown=1:1 a b c` -> ({'from': 'build', 'chown': '1:1'}, ['a', 'b', 'c']).
    Also handles the JSON (exec) form."""
    flags: dict[str, str] = {}
    rest = args.strip()
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        k, _, v = word[2:].partition("=")
        flags[k] = v
        rest = rest.strip()
    if rest.startswith("["):
        try:
            words = json.loads(rest)
            if isinstance(words, list) and all(isinstance(w, str) for w in words):
                return flags, words
        except json.JSONDecodeError:
            pass
    return flags, shlex.split(rest)


def copy_sources(ins: Instr) -> tuple[dict[str, str], list[str], str]:
    """(flags, sources, destination) of a COPY or ADD."""
    flags, words = split_flags(ins.args)
    if len(words) < 2:
        return flags, [], words[0] if words else ""
    return flags, words[:-1], words[-1]


def exec_words(args: str) -> list[str]:
    """ENTRYPOINT/CMD arguments as words (JSON form, else shell words)."""
    args = args.strip()
    if args.startswith("["):
        try:
            return [str(w) for w in json.loads(args)]
        except json.JSONDecodeError:
            pass
    return shlex.split(args)


# ---------------------------------------------------------------- .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):  # "**/" matches zero or more directories
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pattern.find("]", i)
            if j == -1:
                out += re.escape(c)
            else:
                cls = pattern[i + 1 : j]
                if cls.startswith("!"):
                    cls = "^" + cls[1:]
                out += "[" + cls + "]"
                i = j
        else:
            out += re.escape(c)
        i += 1
    return re.compile("^" + out + "$")


class DockerIgnore:
    """Docker's .dockerignore semantics: patterns relative to the context root, cleaned
    (leading and trailing '/' dropped), '**' for any number of directories, '!' for
    exceptions, the last matching pattern wins, and a path is excluded when it or one of
    its parent directories is."""

    def __init__(self, path: Path):
        self.rules: list[tuple[bool, str, re.Pattern[str]]] = []
        if path.is_file():
            for raw in path.read_text().splitlines():
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                neg = line.startswith("!")
                if neg:
                    line = line[1:].strip()
                line = os.path.normpath(line).lstrip("/")
                if line in ("", "."):
                    continue
                self.rules.append((neg, line, _pattern_regex(line)))

    def _matches(self, rel: str) -> bool:
        excluded = False
        for neg, _, rx in self.rules:
            if rx.match(rel):
                excluded = not neg
        return excluded

    def excluded(self, rel: str) -> bool:
        rel = os.path.normpath(rel).lstrip("/")
        parts = rel.split("/")
        return any(self._matches("/".join(parts[: n + 1])) for n in range(len(parts)))


# ---------------------------------------------------------------- COPY sources


def check_copy_sources(dockerfile: Path, context: Path, errors: list[str], label: str = "") -> int:
    """Every COPY/ADD source from the build context exists, stays inside it and is not
    excluded by its .dockerignore; every --from names an earlier stage. Returns how many
    sources were checked."""
    label = label or str(dockerfile)
    instrs, stages = parse_dockerfile(dockerfile)
    ignore = DockerIgnore(context / ".dockerignore")
    checked = 0
    for ins in instrs:
        if ins.keyword not in ("COPY", "ADD"):
            continue
        flags, sources, _dest = copy_sources(ins)
        if not sources:
            errors.append(f"{label} {ins}: no source")
            continue
        if "from" in flags:
            ref = flags["from"]
            earlier = stages[: ins.stage]
            if not any(s.name == ref or str(s.index) == ref for s in earlier):
                if "/" not in ref and ":" not in ref:
                    errors.append(f"{label} {ins}: --from={ref} is not an earlier stage")
            continue
        for src in sources:
            if re.match(r"^[a-z]+://", src) or src.startswith("git@"):
                continue  # ADD from a URL
            checked += 1
            norm = os.path.normpath(src)
            if norm.startswith("..") or os.path.isabs(norm):
                errors.append(f"{label} {ins}: source {src} is outside the build context {context}")
                continue
            matches = glob.glob(str(context / norm)) if any(ch in norm for ch in "*?[") else [str(context / norm)]
            matches = [m for m in matches if os.path.exists(m)]
            if not matches:
                errors.append(f"{label} {ins}: source {src} does not exist in the build context {context}")
                continue
            for m in matches:
                rel = os.path.relpath(m, context)
                if rel != "." and ignore.excluded(rel):
                    errors.append(f"{label} {ins}: source {src} is excluded by {context / '.dockerignore'}")
    return checked


# ---------------------------------------------------------------- workspace


def workspace_packages(root: Path) -> dict[str, tuple[str, dict]]:
    """package name -> (member directory, parsed manifest)."""
    top = tomllib.loads((root / "Cargo.toml").read_text())
    members = top.get("workspace", {}).get("members", [])
    out: dict[str, tuple[str, dict]] = {}
    for pattern in members:
        for member in sorted(glob.glob(str(root / pattern))) or [str(root / pattern)]:
            manifest = Path(member) / "Cargo.toml"
            if not manifest.is_file():
                continue
            data = tomllib.loads(manifest.read_text())
            name = data.get("package", {}).get("name")
            if name:
                out[name] = (os.path.relpath(member, root), data)
    return out


def declared_targets(member: str, manifest: dict, root: Path) -> list[str]:
    """Target source files cargo requires to exist to load this manifest (explicit
    [lib]/[[bin]]/[[bench]]/[[test]]/[[example]] entries), relative to the repository; and
    when none is declared, the default lib or main."""
    req: list[str] = []
    defaults = {"bin": "src/bin/{}.rs", "bench": "benches/{}.rs", "test": "tests/{}.rs", "example": "examples/{}.rs"}
    if "lib" in manifest:
        req.append(manifest["lib"].get("path", "src/lib.rs"))
    for kind, default in defaults.items():
        for t in manifest.get(kind, []):
            if "path" in t:
                req.append(t["path"])
            elif kind == "bin" and t.get("name") == manifest["package"]["name"]:
                req.append("src/main.rs")
            else:
                req.append(default.format(t.get("name", "")))
    if not req:
        for d in ("src/lib.rs", "src/main.rs"):
            if (root / member / d).is_file():
                req.append(d)
                break
    return [f"{member}/{os.path.normpath(p)}" for p in req]


def bin_names(manifest: dict, member_dir: Path) -> set[str]:
    names = {b["name"] for b in manifest.get("bin", []) if "name" in b}
    if not names and (member_dir / "src/main.rs").is_file():
        names.add(manifest["package"]["name"])
    return names


# ---------------------------------------------------------------- the checks


def debian_release(image: str) -> str | None:
    for rel in ("bookworm", "bullseye", "trixie", "buster", "forky"):
        if rel in image:
            return rel
    return None


def check(dockerfile: Path, root: Path) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    notes: list[str] = []
    if not dockerfile.is_file():
        return [f"{dockerfile} does not exist"], notes
    instrs, stages = parse_dockerfile(dockerfile)
    if not stages:
        return [f"{dockerfile}: no FROM"], notes

    # 1. COPY/ADD sources.
    n_sources = check_copy_sources(dockerfile, root, errors, dockerfile.name)
    notes.append(f"{n_sources} COPY sources exist and are not ignored")

    # 2. The cargo build.
    builds = [i for i in instrs if i.keyword == "RUN" and re.search(r"\bcargo\s+build\b", i.args)]
    packages = workspace_packages(root)

    # 2a. What a member's build script reads from outside its own folder ("../proto") must be
    # copied before the last build, or the image build fails where `cargo build` here succeeds.
    if builds:
        copied = [i.args for i in instrs if i.keyword in ("COPY", "ADD") and i.line < builds[-1].line]
        for member, _manifest in packages.values():
            script = root / member / "build.rs"
            if not script.is_file():
                continue
            for outside in sorted(set(re.findall(r"\.\./([A-Za-z0-9_.-]+)", script.read_text()))):
                if not any(re.search(rf"(^|\s){re.escape(outside)}/?(\s|$)", a) for a in copied):
                    errors.append(f"{member}/build.rs reads ../{outside}, which no COPY before the last build brings in")
                else:
                    notes.append(f"{member}/build.rs input {outside}/ is copied")
    if not builds:
        errors.append("no RUN with `cargo build`")
    else:
        final = builds[-1]
        m = re.search(r"(?:-p|--package)[\s=]+([A-Za-z0-9_-]+)", final.args)
        if not m:
            errors.append(f"{final}: `cargo build` without -p/--package")
        else:
            pkg = m.group(1)
            if pkg not in packages:
                errors.append(
                    f"{final}: package {pkg} is not in the workspace (members: {', '.join(sorted(packages))})"
                )
            else:
                member, manifest = packages[pkg]
                bins = bin_names(manifest, root / member)
                if pkg not in bins:
                    errors.append(
                        f"package {pkg} ({member}/Cargo.toml) has no binary named {pkg} (bins: {sorted(bins)})"
                    )
                notes.append(f"builds package {pkg} ({member}/Cargo.toml)")
                build_stage = stages[final.stage]
                later = [i for i in build_stage.instrs if i.line >= final.line]
                if not any(f"target/release/{pkg}" in i.args for i in later):
                    errors.append(
                        f"stage {build_stage.name or build_stage.index}: target/release/{pkg} is never used after the build"
                    )
        for b in builds:
            if "--locked" not in b.args:
                errors.append(f"{b}: `cargo build` without --locked")
            if "--release" not in b.args:
                errors.append(f"{b}: `cargo build` without --release")

        # 3. Caching with stand-ins.
        first = builds[0]
        before = [
            i
            for i in stages[first.stage].instrs
            if i.keyword in ("COPY", "ADD") and i.line < first.line and "from" not in split_flags(i.args)[0]
        ]
        copied = {os.path.normpath(s) for i in before for s in copy_sources(i)[1]}
        if "Cargo.lock" not in copied and "." not in copied:
            errors.append(f"{first}: Cargo.lock is not copied before the build (--locked needs it)")
        for pkg, (member, manifest) in sorted(packages.items()):
            if not ({f"{member}/Cargo.toml", member, "."} & copied):
                errors.append(
                    f"{first}: {member}/Cargo.toml (workspace member {pkg}) is not copied before the first build"
                )
                continue
            if member in copied or "." in copied:
                continue  # real sources: no stand-ins needed
            for target in declared_targets(member, manifest, root):
                if target not in first.args:
                    errors.append(
                        f"{first}: only {member}/Cargo.toml is copied, but the build creates no stand-in for {target} "
                        f"(cargo refuses a manifest whose declared target file is missing)"
                    )
        if len(builds) > 1:
            real = builds[-1]
            copied_later = [
                i for i in stages[real.stage].instrs if i.keyword in ("COPY", "ADD") and first.line < i.line < real.line
            ]
            if not copied_later:
                errors.append(f"{real}: no sources are copied between the stand-in build and this one")
            if not re.search(r"\btouch\b", real.args):
                errors.append(
                    f"{real}: the sources are not touched before the real build; COPY keeps their old "
                    f"modification times, so cargo may keep the stand-ins' artifacts"
                )
            notes.append("dependency layer cached with stand-ins, sources touched before the real build")

    # 4. Stages: the binary's glibc.
    build_stage = stages[builds[-1].stage] if builds else stages[0]
    runtime = stages[-1]
    if runtime is build_stage:
        errors.append("the runtime image is the build stage: use a separate, small runtime stage")
    br, rr = debian_release(build_stage.image), debian_release(runtime.image)
    if br and rr and br != rr:
        errors.append(
            f"build stage {build_stage.image} and runtime stage {runtime.image} are different Debian releases (glibc)"
        )
    notes.append(f"stages: {', '.join(f'{s.name or s.index}={s.image}' for s in stages)}")

    # 5. The runtime stage.
    kw = lambda k: [i for i in runtime.instrs if i.keyword == k]  # noqa: E731
    users = kw("USER")
    if not users:
        errors.append(f"runtime stage {runtime.image} (line {runtime.line}) has no USER: it would run as root")
    else:
        user = users[-1].args.split(":")[0].strip()
        if user in ("root", "0", ""):
            errors.append(f"{users[-1]}: the runtime stage runs as root")
        else:
            notes.append(f"runs as USER {users[-1].args}")
    hcs = kw("HEALTHCHECK")
    if not hcs:
        errors.append("runtime stage has no HEALTHCHECK")
    else:
        hc = hcs[-1].args
        if hc.strip().upper() == "NONE":
            errors.append(f"{hcs[-1]}: health check disabled")
        elif "/ready" not in hc:
            errors.append(f"{hcs[-1]}: the health check does not hit /ready")
        else:
            notes.append("HEALTHCHECK on /ready")
        if re.search(r"\bcurl\b", hc) and not any(re.search(r"\binstall\b.*\bcurl\b", r.args) for r in kw("RUN")):
            errors.append(f"{hcs[-1]}: uses curl, which the runtime stage does not install")
    if not any("8080" in e.args.split() or "8080/tcp" in e.args.split() for e in kw("EXPOSE")):
        errors.append("runtime stage does not EXPOSE 8080")
    eps = kw("ENTRYPOINT")
    if not eps or not any("shardgate" in w for w in exec_words(eps[-1].args)):
        errors.append("runtime stage's ENTRYPOINT is not shardgate")
    cmds = kw("CMD")
    if not cmds or exec_words(cmds[-1].args)[:1] != ["serve"]:
        errors.append('runtime stage\'s CMD is not ["serve"]')
    if not any(
        ins.keyword == "COPY"
        and "from" not in split_flags(ins.args)[0]
        and any(os.path.normpath(s) == "config" for s in copy_sources(ins)[1])
        for ins in runtime.instrs
    ):
        errors.append("runtime stage does not copy config/ (config/topology.toml)")
    if not any("from" in split_flags(i.args)[0] for i in kw("COPY")):
        errors.append("runtime stage copies nothing from the build stage")

    # 6. .dockerignore
    ignore = DockerIgnore(root / ".dockerignore")
    if not (root / ".dockerignore").is_file():
        errors.append(f"{root / '.dockerignore'} does not exist")
    else:
        missing = [d for d in ("target", ".cluster", ".tools", ".venv") if not ignore.excluded(d)]
        if missing:
            errors.append(f".dockerignore does not exclude {', '.join(d + '/' for d in missing)}")
        else:
            notes.append(".dockerignore excludes target/ .cluster/ .tools/ .venv/")
    return errors, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="repository root = build context (default: %(default)s)")
    ap.add_argument("--dockerfile", type=Path, help="Dockerfile to check (default: ROOT/Dockerfile)")
    a = ap.parse_args()
    root = a.root.resolve()
    dockerfile = (a.dockerfile or root / "Dockerfile").resolve()
    errors, notes = check(dockerfile, root)
    if errors:
        print(f"check-dockerfile: {len(errors)} problem(s) in {dockerfile}:", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        return 1
    print(f"check-dockerfile: OK ({dockerfile.relative_to(root) if dockerfile.is_relative_to(root) else dockerfile})")
    for n in notes:
        print(f"  {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
