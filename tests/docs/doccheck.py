"""Reads the shell commands out of the Markdown docs and checks them against
the real binaries, so that a documented command cannot name a command or a
flag that does not exist.

- fenced_blocks(): every fenced block of a Markdown file, with its language
  and the line number of each of its lines.
- command_lines(): the command lines of a block: every logical line of a
  ```sh / ```bash / ```shell block (comments, blank lines and here-document
  bodies left out, backslash continuations joined); the `$ ` lines of a
  ```console block or of an untagged block that has any.
- simple_commands(): one logical line split into simple commands (at |, ;,
  &&, ||, &, parentheses), the insides of $(...) included, redirections
  dropped, synopsis brackets ([--flag X | --other]) flattened.
- FlagChecker: what the binaries accept, read from them (`--helpfull` of
  ftune-scheduler and ftune-worker, `ftunectl --help` and
  `ftunectl NOUN VERB --help`, the usage `ftune-train --help` prints), and
  check_markdown() which reports every problem as "FILE:LINE: problem".

Plain Python 3 (Debian's /usr/bin/python3), no third-party modules.
"""

import dataclasses
import os
import re
import shlex
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The binaries whose flags are checked, by the name a command uses.
FTUNE_BINARIES = ("ftunectl", "ftune-scheduler", "ftune-worker", "ftune-train")
# Lines that run one of these need an engine, a cluster or an init system
# that the tests do not have: skipped (and counted).
SKIPPED_TOOLS = ("docker", "docker-compose", "kubectl", "helm", "systemctl")
SHELL_LANGS = ("sh", "bash", "shell")
CONSOLE_LANGS = ("console", "")


# --- Markdown ---------------------------------------------------------------

@dataclasses.dataclass
class Block:
    path: Path
    lang: str           # "sh", "console", "jsonl", "" (untagged), ...
    first_line: int     # 1-based line number of lines[0] in the file
    lines: list         # the block's content, the fence's indentation removed
    info: str = ""      # the whole info string after the fence

    def where(self, index=0):
        return f"{display(self.path)}:{self.first_line + index}"


def display(path):
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^`\s]*)(.*)$")


def fenced_blocks(path, text=None):
    """Every fenced code block of a Markdown file, in order."""
    if text is None:
        text = Path(path).read_text(encoding="utf-8")
    blocks = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        info = (m.group(3) + m.group(4)).strip()
        body = []
        j = i + 1
        while j < len(lines):
            stripped = lines[j].strip()
            if (stripped.startswith(fence[0] * len(fence)) and
                    set(stripped) == {fence[0]}):
                break
            line = lines[j]
            # Remove at most the fence's own indentation.
            k = 0
            while k < indent and k < len(line) and line[k] == " ":
                k += 1
            body.append(line[k:])
            j += 1
        blocks.append(Block(Path(path), lang, i + 2, body, info))
        i = j + 1
    return blocks


@dataclasses.dataclass
class CommandLine:
    path: Path
    line: int   # 1-based line of the command's first physical line
    text: str   # the logical line (continuations joined), prompt removed

    def where(self):
        return f"{display(self.path)}:{self.line}"


_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")


def _join_continuations(lines, start, prompt=None):
    """Joins lines[start] with the following ones while it ends with '\\'.
    Returns (text, next index). In console blocks continuation lines may
    start with the secondary prompt '> '."""
    text = lines[start]
    i = start + 1
    while text.rstrip().endswith("\\") and i < len(lines):
        nxt = lines[i]
        if prompt is not None and nxt.startswith("> "):
            nxt = nxt[2:]
        text = text.rstrip()[:-1] + " " + nxt.strip()
        i += 1
    return text, i


def command_lines(block):
    """The command lines of a block (see the module comment)."""
    out = []
    lines = block.lines
    if block.lang in SHELL_LANGS:
        i = 0
        while i < len(lines):
            raw = lines[i]
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                i += 1
                continue
            text, nxt = _join_continuations(lines, i)
            out.append(CommandLine(block.path, block.first_line + i, text))
            i = nxt
            heredoc = _HEREDOC.search(text)
            if heredoc:  # skip the body, up to the delimiter line
                delimiter = heredoc.group(3)
                while i < len(lines) and lines[i].strip() != delimiter:
                    i += 1
                i += 1
        return out
    if block.lang in CONSOLE_LANGS:
        if not any(l.startswith("$ ") for l in lines):
            return out
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1
                continue
            text, nxt = _join_continuations(lines, i, prompt="> ")
            out.append(CommandLine(block.path, block.first_line + i, text[2:]))
            i = nxt
            heredoc = _HEREDOC.search(text)
            if heredoc:
                delimiter = heredoc.group(3)
                while i < len(lines) and lines[i].strip() != delimiter:
                    i += 1
                i += 1
        return out
    return out


def broken_continuations(block):
    """Lines of a shell block where a backslash is followed by more text (a
    comment): the shell ends the command there, so the lines after it run as
    separate commands. [(line number, text)]"""
    if block.lang not in SHELL_LANGS:
        return []
    return [(block.first_line + i, l) for i, l in enumerate(block.lines)
            if re.search(r"\\[ \t]+#", l)]


# --- Shell lines ------------------------------------------------------------

def _extract_substitutions(text):
    """Replaces each $(...) outside single quotes with a placeholder word and
    returns (outer text, [inner texts]); inner texts may contain more."""
    outer = []
    inner = []
    i = 0
    quote = None  # None, "'" or '"'
    while i < len(text):
        c = text[i]
        if quote == "'":
            outer.append(c)
            if c == "'":
                quote = None
            i += 1
            continue
        if c == "\\" and i + 1 < len(text):
            outer.append(text[i:i + 2])
            i += 2
            continue
        if c in "'\"" and (quote is None or quote == c):
            quote = None if quote == c else c
            outer.append(c)
            i += 1
            continue
        if c == "$" and text[i + 1:i + 2] == "(":
            depth = 0
            j = i + 1
            q = None
            while j < len(text):
                d = text[j]
                if q:
                    if d == q:
                        q = None
                elif d in "'\"":
                    q = d
                elif d == "(":
                    depth += 1
                elif d == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            inner.append(text[i + 2:j])
            outer.append("__SUBST__")
            i = j + 1
            continue
        outer.append(c)
        i += 1
    return "".join(outer), inner


def _flatten_synopsis(text):
    """'[--a X | --b]' -> ' --a X   --b ': usage brackets are not shell."""
    out = []
    depth = 0
    quote = None
    for c in text:
        if quote:
            if c == quote:
                quote = None
            out.append(c)
            continue
        if c in "'\"":
            quote = c
            out.append(c)
        elif c == "[" :
            depth += 1
            out.append(" ")
        elif c == "]" and depth > 0:
            depth -= 1
            out.append(" ")
        elif c == "|" and depth > 0:
            out.append(" ")
        else:
            out.append(c)
    return "".join(out)


_OPERATORS = {"|", "||", "&", "&&", ";", ";;", "(", ")", "|&"}
_REDIRECTS = {">", ">>", "<", "<<", "<<<", ">&", "<&", ">|", "&>", "&>>"}


def simple_commands(text):
    """The simple commands of one logical shell line, each a list of words;
    $(...) insides come first. Unparseable text gives []."""
    outer, inner = _extract_substitutions(text)
    commands = []
    for sub in inner:
        commands.extend(simple_commands(sub))
    if "[" in outer and ("--" in outer):
        outer = _flatten_synopsis(outer)
    lexer = shlex.shlex(outer, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: not a command we can read
        return commands
    current = []
    skip_next = False
    for tok in tokens:
        if skip_next:
            skip_next = False
            continue
        if tok in _OPERATORS:
            if current:
                commands.append(current)
            current = []
            continue
        if tok in _REDIRECTS or (set(tok) <= set("<>&|") and tok):
            skip_next = True  # the redirection's target
            # "2>" arrives as "2" then ">": drop the descriptor number.
            if current and current[-1].isdigit():
                current.pop()
            continue
        current.append(tok)
    if current:
        commands.append(current)
    return commands


_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def command_word(words):
    """(index, basename) of the word a simple command runs, after variable
    assignments and wrappers such as sudo/env/exec/time; (None, None) for
    none."""
    i = 0
    while i < len(words):
        w = words[i]
        if _ASSIGNMENT.match(w):
            i += 1
            continue
        if w in ("sudo", "exec", "time", "env", "nohup", "command"):
            i += 1
            continue
        return i, os.path.basename(w)
    return None, None


# --- Flags of the binaries ---------------------------------------------------

@dataclasses.dataclass
class CtlFlag:
    takes_value: bool


def _ctl_flags(help_text):
    """{name: CtlFlag}, {short: name} from ftunectl help lines such as
    '  -o, --output-file PATH  ...' or '  --all  ...'."""
    flags, shorts = {}, {}
    section = None
    for line in help_text.splitlines():
        if re.match(r"^[a-z ]*flags[^:]*:", line):
            section = "flags"
            continue
        if line and not line.startswith(" "):
            section = None
        if section != "flags":
            continue
        m = re.match(r"^\s+(?:-(\w), )?--([a-z0-9-]+)((?: [A-Z][A-Za-z_:=|.-]*)*)"
                     r"(?:\s{2,}|$)", line)
        if not m:
            # e.g. "  --format csv   csv: ..." (a literal value)
            m = re.match(r"^\s+(?:-(\w), )?--([a-z0-9-]+)( \S+)?", line)
            if not m:
                continue
        short, name, value = m.group(1), m.group(2), (m.group(3) or "").strip()
        flags[name] = CtlFlag(takes_value=bool(value))
        if short:
            shorts[short] = name
    return flags, shorts


class FlagChecker:
    """What the real binaries accept. Loaded lazily; one per test run."""

    def __init__(self, bin_dir, source_dir=REPO):
        self.bin_dir = Path(bin_dir)
        self.source_dir = Path(source_dir)
        self._absl = {}
        self._ctl = None
        self._train = None

    # absl binaries: `--helpfull` lists "  --name (help...); default: ...".
    def absl_flags(self, binary):
        if binary not in self._absl:
            out = subprocess.run([str(self.bin_dir / binary), "--helpfull"],
                                 capture_output=True, text=True, timeout=60,
                                 check=False)
            names = set(re.findall(r"^\s+--([A-Za-z0-9_]+) \(",
                                   out.stdout + out.stderr, re.M))
            if not names:
                raise RuntimeError(f"{binary} --helpfull listed no flags:\n"
                                   f"{out.stdout}{out.stderr}")
            bools = set(re.findall(
                r"^\s+--([A-Za-z0-9_]+) \((?:[^;]|;(?! default))*\);\s*"
                r"default: (?:true|false);", out.stdout + out.stderr, re.M | re.S))
            self._absl[binary] = (names | {"help", "helpfull", "helpshort",
                                           "version"}, bools)
        return self._absl[binary]

    def own_flags(self, binary):
        """The flags `binary` defines itself: those `--helpfull` lists under
        "Flags from .../main.cc" (not Abseil's own --flagfile and such)."""
        out = subprocess.run([str(self.bin_dir / binary), "--helpfull"],
                             capture_output=True, text=True, timeout=60,
                             check=False)
        names = set()
        section = None
        for line in (out.stdout + out.stderr).splitlines():
            m = re.match(r"^\s*Flags from (\S+):", line)
            if m:
                section = m.group(1)
                continue
            if section and section.endswith("main.cc"):
                f = re.match(r"^\s+--([A-Za-z0-9_]+) \(", line)
                if f:
                    names.add(f.group(1))
        if not names:
            raise RuntimeError(f"{binary} --helpfull: no flags from main.cc")
        return names

    def ctl(self):
        """{'global': flags, 'shorts': ..., 'commands': {(noun, verb): ...},
        'nouns': set}."""
        if self._ctl is None:
            ctl = str(self.bin_dir / "ftunectl")
            top = subprocess.run([ctl, "--help"], capture_output=True,
                                 text=True, timeout=30, check=False)
            text = top.stdout + top.stderr
            commands = {}
            section = None
            for line in text.splitlines():
                if line.startswith("commands:"):
                    section = "commands"
                    continue
                if line and not line.startswith(" "):
                    section = None
                if section == "commands":
                    m = re.match(r"^\s+([a-z]+)(?: ([a-z][a-z-]*))?(?=\s|$)", line)
                    if m:
                        commands[tuple(w for w in m.groups() if w)] = None
            if not commands:
                raise RuntimeError(f"ftunectl --help listed no commands:\n{text}")
            global_flags, global_shorts = _ctl_flags(text)
            if "address" in global_flags and "--endpoint is an alias" in text:
                global_flags["endpoint"] = global_flags["address"]
            for words in commands:
                sub = subprocess.run([ctl, *words, "--help"],
                                     capture_output=True, text=True,
                                     timeout=30, check=False)
                if sub.returncode != 0:
                    raise RuntimeError(
                        f"ftunectl {' '.join(words)} --help exited "
                        f"{sub.returncode}:\n{sub.stdout}{sub.stderr}")
                commands[words] = _ctl_flags(sub.stdout + sub.stderr)
            self._ctl = {
                "global": global_flags,
                "shorts": global_shorts,
                "commands": commands,
                "nouns": {w[0] for w in commands if len(w) == 2},
            }
        return self._ctl

    def train_flags(self):
        """{'spec': set, 'bench': set, 'generate': set} from the usage that `ftune-train
        --help` prints: kUsage in worker/train_main.cc, read from the source
        because builds without the trainer (the sanitizer build) have no
        binary (TrainHelpTest checks that the binary prints it)."""
        if self._train is None:
            text = (self.source_dir / "worker/train_main.cc").read_text()
            m = re.search(r'kUsage\[\] = R"\((.*?)\)";', text, re.S)
            usage = {"spec": set(), "bench": set(), "generate": set()}
            mode = None
            for body in (m.group(1) if m else "").splitlines():
                if not body.strip():
                    break  # the synopsis ends at the first blank line
                m = re.match(r"^\s+ftune-train( bench| generate)?\b", body)
                if m:
                    mode = m.group(1).strip() if m.group(1) else "spec"
                elif not body.startswith("      "):  # not a continuation
                    mode = None
                if mode:
                    usage[mode] |= set(re.findall(r"--([a-z][a-z0-9-]*)", body))
            if not usage["spec"]:
                raise RuntimeError("no kUsage synopsis in worker/train_main.cc")
            self._train = usage
        return self._train

    # --- checking one command --------------------------------------------

    def check(self, binary, args):
        """Problems (strings) of one invocation of `binary` with `args`."""
        if binary == "ftunectl":
            return self._check_ctl(args)
        if binary == "ftune-train":
            flags = self.train_flags()
            mode = args[0] if args[:1] in (["bench"], ["generate"]) else "spec"
            return [f"ftune-train{'' if mode == 'spec' else ' ' + mode}: "
                    f"unknown flag --{name} (ftune-train --help lists "
                    f"{', '.join('--' + f for f in sorted(flags[mode]))})"
                    for name in _dash_names(args) if name not in flags[mode]]
        names, bools = self.absl_flags(binary)
        problems = []
        for name in _dash_names(args, absl=True):
            if name in names:
                continue
            if name.startswith("no") and name[2:] in bools:
                continue
            problems.append(f"{binary}: unknown flag --{name} (see "
                            f"'{binary} --helpfull')")
        return problems

    def _check_ctl(self, args):
        ctl = self.ctl()
        problems = []
        words = []
        command = None
        help_command = False
        i = 0
        while i < len(args):
            a = args[i]
            i += 1
            if a == "--":
                break
            if len(a) > 1 and a.startswith("-") and not _is_placeholder(a):
                if a.startswith("--"):
                    name = a[2:].split("=", 1)[0]
                else:
                    name = a[1:2]
                    name = ctl["shorts"].get(name) or (
                        command and ctl["commands"][command][1].get(name)) or name
                has_value = "=" in a
                spec = ctl["global"].get(name)
                if spec is None and command is not None:
                    spec = ctl["commands"][command][0].get(name)
                if spec is None:
                    where = (f"ftunectl {' '.join(command)}" if command
                             else "ftunectl")
                    problems.append(f"{where}: unknown flag {a.split('=')[0]}"
                                    f" (see '{where} --help')")
                    continue
                if spec.takes_value and not has_value:
                    i += 1
                continue
            if command is None and not help_command:
                if not words and a == "help":
                    help_command = True
                    continue
                words.append(a)
                if len(words) == 1:
                    if (a,) in ctl["commands"]:
                        command, words = (a,), []
                    elif a not in ctl["nouns"]:
                        problems.append(f"ftunectl: unknown command \"{a}\"")
                        return problems
                else:
                    key = (words[0], words[1])
                    if key not in ctl["commands"]:
                        verbs = sorted(w[1] for w in ctl["commands"]
                                       if len(w) == 2 and w[0] == words[0])
                        problems.append(
                            f"ftunectl: unknown command \"{words[0]} "
                            f"{words[1]}\" (\"{words[0]}\" has: "
                            f"{', '.join(verbs)})")
                        return problems
                    command, words = key, []
            elif help_command and command is None:
                words.append(a)
                if len(words) == 1 and (a,) not in ctl["commands"] and \
                        a not in ctl["nouns"]:
                    problems.append(f"ftunectl help: unknown command \"{a}\"")
                    return problems
                if len(words) == 2 and (words[0], a) not in ctl["commands"]:
                    problems.append(f"ftunectl help: unknown command "
                                    f"\"{words[0]} {a}\"")
                    return problems
        return problems


def _is_placeholder(arg):
    # "-" alone (stdin) or negative numbers ("--offset -4096").
    return arg == "-" or re.match(r"^-\d", arg) is not None


def _dash_names(args, absl=False):
    """Flag names in args: '--name=x' / '--name' / (absl) '-name'."""
    names = []
    for a in args:
        if a == "--":
            break
        m = re.match(r"^--?([A-Za-z][A-Za-z0-9_-]*)(=|$)", a)
        if not m:
            continue
        if not absl and not a.startswith("--"):
            continue
        names.append(m.group(1))
    return names


# --- Whole files ---------------------------------------------------------

@dataclasses.dataclass
class Report:
    problems: list = dataclasses.field(default_factory=list)   # "FILE:LINE: ..."
    checked: int = 0      # command lines that run one of FTUNE_BINARIES
    skipped: int = 0      # command lines with docker, kubectl, helm, systemctl
    skipped_where: list = dataclasses.field(default_factory=list)

    def merge(self, other):
        self.problems += other.problems
        self.checked += other.checked
        self.skipped += other.skipped
        self.skipped_where += other.skipped_where


def check_markdown(path, checker, text=None):
    """Checks every command of one Markdown file; see Report."""
    report = Report()
    for block in fenced_blocks(path, text):
        for line, raw in broken_continuations(block):
            report.problems.append(
                f"{display(path)}:{line}: a '\\' followed by a comment does "
                f"not continue the command (the shell ends it there): "
                f"{raw.strip()}")
        for cmd in command_lines(block):
            commands = simple_commands(cmd.text)
            words_run = [command_word(c)[1] for c in commands]
            if any(w in SKIPPED_TOOLS for w in words_run):
                report.skipped += 1
                report.skipped_where.append(cmd.where())
                continue
            ours = False
            for words in commands:
                index, word = command_word(words)
                if word not in FTUNE_BINARIES:
                    continue
                ours = True
                for problem in checker.check(word, words[index + 1:]):
                    report.problems.append(f"{cmd.where()}: {problem}")
            if ours:
                report.checked += 1
    return report


def heading_anchors(path):
    """The anchors GitHub gives the headings of a Markdown file: lower
    case, punctuation other than '-' and '_' dropped, spaces to '-'."""
    anchors = set()
    for block_free_line in _lines_outside_fences(Path(path)):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", block_free_line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            anchors.add(slug.replace(" ", "-"))
    return anchors


def _lines_outside_fences(path):
    fence = None
    for line in path.read_text(encoding="utf-8").split("\n"):
        m = _FENCE.match(line)
        if m and (fence is None or m.group(2)[0] == fence):
            fence = None if fence else m.group(2)[0]
            continue
        if fence is None:
            yield line


def broken_links(path):
    """["FILE:LINE: ..."] for relative links of a Markdown file whose file,
    or whose #anchor in a Markdown file, does not exist."""
    path = Path(path)
    problems = []
    fence = None
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"),
                                  start=1):
        m = _FENCE.match(line)
        if m and (fence is None or m.group(2)[0] == fence):
            fence = None if fence else m.group(2)[0]
            continue
        if fence is not None:
            continue
        for link in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line)):
            if re.match(r"^[a-z]+:", link):
                continue  # http:, https:, mailto:
            target, _, anchor = link.partition("#")
            target_path = (path.parent / target) if target else path
            if not target_path.exists():
                problems.append(f"{display(path)}:{number}: link to a missing "
                                f"file: {link}")
            elif anchor and target_path.suffix == ".md" and \
                    anchor not in heading_anchors(target_path):
                problems.append(f"{display(path)}:{number}: link to a missing "
                                f"heading: {link}")
    return problems


def documentation_files(repo=REPO):
    """README.md and docs/*.md."""
    return [repo / "README.md"] + sorted((repo / "docs").glob("*.md"))


# --- Executable blocks ---------------------------------------------------

def tagged_blocks(path, tag):
    """Shell blocks of `path` whose first line is the comment
    '# runbook: <tag>'."""
    return [b for b in fenced_blocks(path)
            if b.lang in SHELL_LANGS and b.lines and
            b.lines[0].strip() == f"# runbook: {tag}"]


def substitute_assignments(lines, values):
    """Replaces the assignment lines 'NAME=...' of a block for each NAME in
    `values` with NAME=<value> (shell-quoted). Raises KeyError naming a
    NAME the block does not assign, so a test notices a doc that changed."""
    out = []
    seen = set()
    for line in lines:
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=", line)
        if m and m.group(1) in values and m.group(1) not in seen:
            out.append(f"{m.group(1)}={shlex.quote(str(values[m.group(1)]))}")
            seen.add(m.group(1))
        else:
            out.append(line)
    missing = set(values) - seen
    if missing:
        raise KeyError(f"the block assigns none of {sorted(missing)}")
    return out


@dataclasses.dataclass
class ConsoleStep:
    command: str     # without the "$ " prompt, continuations joined
    expected: list   # output lines shown after it
    line: int        # 1-based line of the command in the file


def console_steps(block):
    """The `$ ` commands of a console block, each with the output lines that
    follow it."""
    steps = []
    lines = block.lines
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            if steps:
                steps[-1].expected.append(lines[i])
            i += 1
            continue
        text, nxt = _join_continuations(lines, i, prompt="> ")
        steps.append(ConsoleStep(text[2:], [], block.first_line + i))
        i = nxt
    for s in steps:
        while s.expected and not s.expected[-1].strip():
            s.expected.pop()
    return steps


def output_matches(expected, actual):
    """Expected lines against actual ones; '...' inside an expected line
    matches any text, and a line that is only '...' any number of lines."""
    def line_re(e):
        return re.compile("^" + ".*?".join(re.escape(p) for p in e.split("..."))
                          + "$")

    def match(ei, ai):
        if ei == len(expected):
            return ai == len(actual)
        if expected[ei].strip() == "...":
            return any(match(ei + 1, k) for k in range(ai, len(actual) + 1))
        return (ai < len(actual) and line_re(expected[ei]).match(actual[ai])
                is not None and match(ei + 1, ai + 1))

    return match(0, 0)


def decode_raw_bytes(text):
    r"""'\xHH' in an example stands for the raw byte HH (invalid UTF-8, a
    byte order mark); everything else is UTF-8."""
    out = bytearray()
    for part in re.split(r"(\\x[0-9a-fA-F]{2})", text):
        if re.fullmatch(r"\\x[0-9a-fA-F]{2}", part):
            out.append(int(part[2:], 16))
        else:
            out += part.encode("utf-8")
    return bytes(out)
