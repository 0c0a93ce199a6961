"""Shell completion: the ``completion`` command and kubectl's ``kubectl_complete-dotnet_monitor`` helper.

Since kubectl 1.26, ``kubectl dotnet-monitor <TAB>`` is completed by kubectl itself: it runs the
executable ``kubectl_complete-dotnet_monitor`` from PATH with the plugin's arguments so far plus the
word being completed (``""`` for a new word) and reads one candidate per line (optionally
``value<TAB>description``) and a last line ``:<directive>`` (a cobra ShellCompDirective). That
helper is :func:`complete_main`. krew links only the plugin itself, so the helper is one manual
step (see ``completion --help``).

The shell scripts printed by ``completion bash|zsh|fish|powershell`` are for running the plugin
directly as ``kubectl-dotnet_monitor``; they call the same helper, so both routes give the same
candidates.

Candidates come from the live click command tree (subcommands, flags, ``click.Choice`` values), so
they stay right as commands are added. Pods, containers and namespaces come from the cluster via
the kube layer, imported lazily; contexts, clusters and users come from the kubeconfig files. Any
failure means "no candidates", never a traceback or a non-zero exit: completion must not get in
the way of typing.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import click

# cobra's ShellCompDirective bits (spf13/cobra completions.go), as kubectl expects them.
DIRECTIVE_DEFAULT = 0
DIRECTIVE_ERROR = 1
DIRECTIVE_NO_SPACE = 2
DIRECTIVE_NO_FILE = 4
DIRECTIVE_FILTER_EXT = 8
DIRECTIVE_FILTER_DIRS = 16
DIRECTIVE_KEEP_ORDER = 32

HELPER_NAME = "kubectl_complete-dotnet_monitor"
PLUGIN_NAME = "kubectl-dotnet_monitor"
SHELLS = ("bash", "zsh", "fish", "powershell")

# Cluster look-ups must never make the shell feel stuck.
CLUSTER_TIMEOUT_SECONDS = 3.0

# Parameter names that hold a pod (positional arguments or options), by the CLI's conventions.
POD_PARAMS = frozenset({"pod", "pods", "pod_name", "target", "targets"})
# Value completers keyed by the option's long name (without dashes).
KUBECONFIG_KEYS = {"context": "contexts", "cluster": "clusters", "user": "users"}


@dataclass(frozen=True)
class Candidate:
    """One completion: the value and an optional one-line description."""

    value: str
    description: str = ""

    def line(self) -> str:
        desc = " ".join(self.description.split())
        return f"{self.value}\t{desc}" if desc else self.value


@dataclass
class Resolved:
    """Where the cursor is, after walking the typed arguments through the command tree."""

    command: click.Command
    path: list[str] = field(default_factory=list)  # subcommand names so far
    options: dict[str, str] = field(default_factory=dict)  # param name -> last value typed
    positionals: list[str] = field(default_factory=list)  # for the current command
    pending: click.Option | None = None  # the option whose value is being typed
    only_positionals: bool = False  # a "--" was typed


# ----------------------------------------------------------------------------- command-tree walk


def _option_index(command: click.Command) -> dict[str, click.Option]:
    index: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in (*param.opts, *param.secondary_opts):
                index[opt] = param
    return index


def _takes_value(option: click.Option) -> bool:
    return not option.is_flag and not option.count and option.nargs != 0


def _subcommand(group: click.Command, name: str) -> click.Command | None:
    if not isinstance(group, click.Group):
        return None
    try:
        return group.get_command(click.Context(group, resilient_parsing=True), name)
    except Exception:  # noqa: BLE001 - a lazily loaded command that fails to load is just absent
        return None


def resolve(root: click.Command, args: Sequence[str]) -> Resolved:
    """Walk ``args`` (complete words before the cursor) down the command tree. Pure."""
    state = Resolved(command=root)
    index = _option_index(root)
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if state.only_positionals:
            state.positionals.append(tok)
            continue
        if tok == "--":
            state.only_positionals = True
            continue
        if tok.startswith("--") and "=" in tok:
            name, value = tok.split("=", 1)
            if name in index and index[name].name:
                state.options[index[name].name] = value
            continue
        if tok.startswith("-") and len(tok) > 1:
            option = index.get(tok)
            if option is None and not tok.startswith("--") and tok[:2] in index:
                attached = index[tok[:2]]  # -nshop
                if _takes_value(attached) and attached.name:
                    state.options[attached.name] = tok[2:]
                continue
            if option is not None and _takes_value(option):
                if i < len(args):
                    if option.name:
                        state.options[option.name] = args[i]
                    i += 1
                else:
                    state.pending = option
            continue
        sub = _subcommand(state.command, tok) if not state.positionals else None
        if sub is not None:
            state.command = sub
            state.path.append(tok)
            # Options of the parents stay valid after the subcommand (kubectl-style global flags).
            index = {**index, **_option_index(sub)}
            state.positionals = []
            continue
        state.positionals.append(tok)
    return state


# ----------------------------------------------------------------------------- candidate sources


def _prefixed(values: Iterable[Candidate], prefix: str) -> list[Candidate]:
    seen: set[str] = set()
    out = []
    for cand in values:
        if cand.value.startswith(prefix) and cand.value not in seen:
            seen.add(cand.value)
            out.append(cand)
    return out


def _short_help(command: click.Command) -> str:
    try:
        return command.get_short_help_str(limit=60)
    except Exception:  # noqa: BLE001
        return ""


def subcommand_candidates(group: click.Command) -> list[Candidate]:
    """Visible subcommands of a group, with their short help."""
    if not isinstance(group, click.Group):
        return []
    ctx = click.Context(group, resilient_parsing=True)
    out = []
    for name in group.list_commands(ctx):
        sub = _subcommand(group, name)
        if sub is not None and not sub.hidden:
            out.append(Candidate(name, _short_help(sub)))
    return out


def option_candidates(state: Resolved, root: click.Command) -> list[Candidate]:
    """Flags of the current command and of its parents (global flags), long form first."""
    commands = [root]
    cmd: click.Command | None = root
    for name in state.path:
        cmd = _subcommand(cmd, name) if cmd is not None else None
        if cmd is not None:
            commands.append(cmd)
    out: list[Candidate] = []
    for command in reversed(commands):
        params = list(command.params)
        if command.add_help_option is not False:
            help_opt = command.get_help_option(click.Context(command, resilient_parsing=True))
            if help_opt is not None:
                params.append(help_opt)
        for param in params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            names = sorted((*param.opts, *param.secondary_opts), key=lambda o: (not o.startswith("--"), o))
            for opt in names:
                out.append(Candidate(opt, param.help or ""))
    return out


def kubeconfig_files(explicit: str | None, env: Mapping[str, str]) -> list[str]:
    """The kubeconfig files kubectl would read, in merge order."""
    if explicit:
        return [os.path.expanduser(explicit)]
    if env.get("KUBECONFIG"):
        files = []
        for item in env["KUBECONFIG"].split(os.pathsep):
            if item and item not in files:
                files.append(item)
        return files
    home = env.get("HOME") or env.get("USERPROFILE") or os.path.expanduser("~")
    return [os.path.join(home, ".kube", "config")]


def kubeconfig_names(kind: str, explicit: str | None, env: Mapping[str, str]) -> list[Candidate]:
    """Names of ``contexts``, ``clusters`` or ``users`` across the merged kubeconfig files."""
    import yaml

    out: list[Candidate] = []
    current = None
    for path in kubeconfig_files(explicit, env):
        try:
            with open(path, encoding="utf-8") as fh:
                doc = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(doc, dict):
            continue
        if current is None and doc.get("current-context"):
            current = doc["current-context"]
        for entry in doc.get(kind) or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                desc = ""
                if kind == "contexts" and isinstance(entry.get("context"), dict):
                    ctx = entry["context"]
                    desc = f"cluster {ctx.get('cluster', '?')}"
                    if ctx.get("namespace"):
                        desc += f", namespace {ctx['namespace']}"
                out.append(Candidate(entry["name"], desc))
    if current:
        out = [Candidate(c.value, (c.description + " (current)").strip()) if c.value == current else c
               for c in out]
    return out


def _kube_client(options: Mapping[str, str], env: Mapping[str, str]):
    """A KubeClient for the flags typed so far (lazy import of the kube layer)."""
    from kubectl_dotnet_monitor.kube.api import KubeClient
    from kubectl_dotnet_monitor.kube.config import KubeFlags, resolve_connection

    flags = KubeFlags(
        kubeconfig=options.get("kubeconfig"),
        context=options.get("context"),
        cluster=options.get("cluster"),
        user=options.get("user"),
        namespace=options.get("namespace"),
        request_timeout=CLUSTER_TIMEOUT_SECONDS,
    )
    conn = resolve_connection(flags, env=dict(env))
    return KubeClient(conn), conn.namespace


def cluster_namespaces(options: Mapping[str, str], env: Mapping[str, str]) -> list[Candidate]:
    client, _ = _kube_client(options, env)
    items = client.get("/api/v1/namespaces").get("items") or []
    return [Candidate(i["metadata"]["name"]) for i in items if i.get("metadata", {}).get("name")]


def cluster_pods(options: Mapping[str, str], env: Mapping[str, str]) -> list[Candidate]:
    client, namespace = _kube_client(options, env)
    items = client.get(f"/api/v1/namespaces/{namespace}/pods").get("items") or []
    out = []
    for item in items:
        name = item.get("metadata", {}).get("name")
        if name:
            out.append(Candidate(name, (item.get("status") or {}).get("phase", "")))
    return out


def cluster_containers(pod: str, options: Mapping[str, str], env: Mapping[str, str]) -> list[Candidate]:
    client, namespace = _kube_client(options, env)
    pod = pod.split("/", 1)[1] if pod.startswith(("pod/", "pods/", "po/")) else pod
    spec = client.get(f"/api/v1/namespaces/{namespace}/pods/{pod}").get("spec") or {}
    out = [Candidate(c["name"], c.get("image", "")) for c in spec.get("containers") or [] if c.get("name")]
    return out


# ----------------------------------------------------------------------------- the completer


Source = Callable[[], list[Candidate]]


def _param_type_candidates(param: click.Parameter, incomplete: str) -> tuple[list[Candidate], int] | None:
    """Values implied by the parameter's click type, or None if the type says nothing."""
    ptype = param.type
    if isinstance(ptype, click.Choice):
        return [Candidate(str(c)) for c in ptype.choices], DIRECTIVE_NO_FILE
    if isinstance(ptype, click.Path):
        return [], DIRECTIVE_FILTER_DIRS if ptype.dir_okay and not ptype.file_okay else DIRECTIVE_DEFAULT
    if isinstance(ptype, click.File):
        return [], DIRECTIVE_DEFAULT
    if isinstance(ptype, click.types.BoolParamType):
        return [Candidate("true"), Candidate("false")], DIRECTIVE_NO_FILE
    return None


def value_candidates(param: click.Parameter, state: Resolved, incomplete: str,
                     env: Mapping[str, str]) -> tuple[list[Candidate], int]:
    """Candidates for the value of ``param`` (an option being given a value, or a positional)."""
    name = param.name or ""
    by_type = _param_type_candidates(param, incomplete)
    if by_type is not None:
        return by_type
    if name == "namespace":
        return cluster_namespaces(state.options, env), DIRECTIVE_NO_FILE
    if name in KUBECONFIG_KEYS:
        return kubeconfig_names(KUBECONFIG_KEYS[name], state.options.get("kubeconfig"), env), DIRECTIVE_NO_FILE
    if name == "kubeconfig":
        return [], DIRECTIVE_DEFAULT
    if "--container" in getattr(param, "opts", ()):
        pods = [p for p in state.positionals if p]
        pod = state.options.get("pod") or (pods[0] if pods else None)
        return (cluster_containers(pod, state.options, env) if pod else []), DIRECTIVE_NO_FILE
    if name in POD_PARAMS:
        return cluster_pods(state.options, env), DIRECTIVE_NO_FILE
    # A free-form value: files when the metavar says it is a path (-o FILE|DIR|-), else nothing.
    metavar = (getattr(param, "metavar", None) or "").upper()
    if re.search(r"FILE|PATH", metavar):
        return [], DIRECTIVE_DEFAULT
    if "DIR" in metavar:
        return [], DIRECTIVE_FILTER_DIRS
    return [], DIRECTIVE_NO_FILE


def _positional_param(command: click.Command, index: int) -> click.Argument | None:
    args = [p for p in command.params if isinstance(p, click.Argument)]
    pos = 0
    for arg in args:
        if arg.nargs < 0:  # variadic: takes everything from here on
            return arg
        if index < pos + arg.nargs:
            return arg
        pos += arg.nargs
    return None


def complete(root: click.Command, words: Sequence[str], env: Mapping[str, str] | None = None
             ) -> tuple[list[Candidate], int]:
    """Candidates and cobra directive for ``words`` = the plugin's args + the word being typed."""
    env = os.environ if env is None else env
    args, incomplete = (list(words[:-1]), words[-1]) if words else ([], "")
    state = resolve(root, args)

    if state.pending is not None:
        cands, directive = value_candidates(state.pending, state, incomplete, env)
        return _prefixed(cands, incomplete), directive

    if incomplete.startswith("--") and "=" in incomplete:
        name, value = incomplete.split("=", 1)
        option = _option_index_chain(root, state).get(name)
        if option is None or not _takes_value(option):
            return [], DIRECTIVE_NO_FILE
        cands, directive = value_candidates(option, state, value, env)
        return [Candidate(f"{name}={c.value}", c.description) for c in _prefixed(cands, value)], directive

    if incomplete.startswith("-") and not state.only_positionals:
        return _prefixed(option_candidates(state, root), incomplete), DIRECTIVE_NO_FILE

    if isinstance(state.command, click.Group) and not state.positionals:
        return _prefixed(subcommand_candidates(state.command), incomplete), DIRECTIVE_NO_FILE

    param = _positional_param(state.command, len(state.positionals))
    if param is None:
        return [], DIRECTIVE_NO_FILE
    cands, directive = value_candidates(param, state, incomplete, env)
    if incomplete.startswith(("pod/", "po/")) and (param.name or "") in POD_PARAMS:
        kind, rest = incomplete.split("/", 1)
        return [Candidate(f"{kind}/{c.value}", c.description) for c in _prefixed(cands, rest)], directive
    return _prefixed(cands, incomplete), directive


def _option_index_chain(root: click.Command, state: Resolved) -> dict[str, click.Option]:
    index = _option_index(root)
    cmd: click.Command | None = root
    for name in state.path:
        cmd = _subcommand(cmd, name) if cmd is not None else None
        if cmd is not None:
            index.update(_option_index(cmd))
    return index


def render(candidates: Iterable[Candidate], directive: int) -> str:
    """The helper's stdout: one candidate per line, then ``:<directive>``."""
    lines = [c.line() for c in candidates if c.value and "\n" not in c.value]
    return "".join(line + "\n" for line in lines) + f":{directive}\n"


def complete_main(argv: list[str] | None = None) -> None:
    """Console entry point of ``kubectl_complete-dotnet_monitor``. Always exits 0."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        from kubectl_dotnet_monitor.cli.app import cli

        candidates, directive = complete(cli, words)
    except BaseException:  # noqa: BLE001 - completion never fails loudly (Ctrl-C included)
        candidates, directive = [], DIRECTIVE_NO_FILE
    try:
        sys.stdout.write(render(candidates, directive))
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    sys.exit(0)


# ----------------------------------------------------------------------------- shell scripts

_BASH = r"""# bash completion for kubectl-dotnet_monitor                 -*- shell-script -*-
# `kubectl dotnet-monitor <TAB>` is completed by kubectl itself (1.26+) through the helper
# kubectl_complete-dotnet_monitor; this script makes the same helper complete the plugin when it
# is run directly as kubectl-dotnet_monitor.
#   source <(kubectl dotnet-monitor completion bash)

__kubectl_dotnet_monitor_complete() {
    local cur words cword
    if declare -F _get_comp_words_by_ref >/dev/null 2>&1; then
        _get_comp_words_by_ref -n "=:" cur words cword
    else
        # Without bash-completion: re-split the line on blanks only, so --flag=value stays one word.
        local line="${COMP_LINE:0:COMP_POINT}"
        read -ra words <<< "$line"
        [[ $line == *[[:blank:]] || ${#words[@]} -eq 0 ]] && words+=("")
        cword=$(( ${#words[@]} - 1 )); cur="${words[cword]}"
    fi
    local out
    out=$(kubectl_complete-dotnet_monitor "${words[@]:1:cword-1}" "$cur" 2>/dev/null) || return 0
    local directive=0 line cands=()
    while IFS= read -r line; do
        case "$line" in
            :[0-9]*) directive=${line#:} ;;
            "") ;;
            *) cands+=("${line%%$'\t'*}") ;;
        esac
    done <<< "$out"
    COMPREPLY=()
    if (( ${#cands[@]} )); then
        local c
        for c in "${cands[@]}"; do
            [[ $c == "$cur"* ]] && COMPREPLY+=("$c")
        done
        if [[ $cur == *[=:]* ]]; then
            # bash splits words at = and :; hand back only the part after the last one.
            local strip="${cur%"${cur##*[=:]}"}" i
            for i in "${!COMPREPLY[@]}"; do COMPREPLY[i]=${COMPREPLY[i]#"$strip"}; done
        fi
    fi
    if (( directive & 2 )); then compopt -o nospace 2>/dev/null; fi
    if (( ${#COMPREPLY[@]} == 0 )) && ! (( directive & 4 )); then
        if (( directive & 16 )); then
            COMPREPLY=($(compgen -d -- "$cur"))
        else
            COMPREPLY=($(compgen -f -- "$cur"))
        fi
    fi
    return 0
}

complete -o default -F __kubectl_dotnet_monitor_complete kubectl-dotnet_monitor
"""

_ZSH = r"""#compdef kubectl-dotnet_monitor
# zsh completion for kubectl-dotnet_monitor. `kubectl dotnet-monitor <TAB>` is completed by kubectl
# itself (1.26+) through kubectl_complete-dotnet_monitor; this wires the same helper to the
# plugin run directly.
#   source <(kubectl dotnet-monitor completion zsh)

__kubectl_dotnet_monitor_complete() {
    local -a lines cands
    local out line directive=0 value desc
    out=$(kubectl_complete-dotnet_monitor "${(@)words[2,CURRENT-1]}" "${words[CURRENT]}" 2>/dev/null) || return 1
    lines=("${(@f)out}")
    for line in $lines; do
        if [[ $line == :[0-9]* ]]; then
            directive=${line#:}
        elif [[ -n $line ]]; then
            value=${line%%$'\t'*}
            desc=""
            [[ $line == *$'\t'* ]] && desc=${line#*$'\t'}
            value=${value//:/\\:}
            if [[ -n $desc ]]; then cands+=("${value}:${desc}"); else cands+=("${value}"); fi
        fi
    done
    if (( ${#cands} )); then
        if (( directive & 2 )); then
            _describe -t values 'kubectl-dotnet_monitor' cands -S ''
        else
            _describe -t values 'kubectl-dotnet_monitor' cands
        fi
    elif (( directive & 16 )); then
        _files -/
    elif ! (( directive & 4 )); then
        _files
    fi
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    __kubectl_dotnet_monitor_complete "$@"
else
    compdef __kubectl_dotnet_monitor_complete kubectl-dotnet_monitor
fi
"""

_FISH = r"""# fish completion for kubectl-dotnet_monitor. `kubectl dotnet-monitor <TAB>` is completed by
# kubectl itself (1.26+) through kubectl_complete-dotnet_monitor; this wires the same helper to the
# plugin run directly.
#   kubectl dotnet-monitor completion fish | source

function __kubectl_dotnet_monitor_complete
    set -l args (commandline -opc)
    set -e args[1]
    set -l cur (commandline -ct)
    set -l out (kubectl_complete-dotnet_monitor $args "$cur" 2>/dev/null)
    or return
    set -l directive 0
    if test (count $out) -gt 0; and string match -qr '^:[0-9]+$' -- $out[-1]
        set directive (string sub -s 2 -- $out[-1])
        set -e out[-1]
    end
    if test (count $out) -gt 0
        printf '%s\n' $out
    else if test (math "bitand($directive, 4)") -eq 0
        __fish_complete_path "$cur"
    end
end

complete -c kubectl-dotnet_monitor -f -a '(__kubectl_dotnet_monitor_complete)'
"""

_POWERSHELL = r"""# PowerShell completion for kubectl-dotnet_monitor. `kubectl dotnet-monitor <TAB>` is completed by
# kubectl itself (1.26+) through kubectl_complete-dotnet_monitor; this wires the same helper to the
# plugin run directly.
#   kubectl dotnet-monitor completion powershell | Out-String | Invoke-Expression

Register-ArgumentCompleter -Native -CommandName 'kubectl-dotnet_monitor', 'kubectl-dotnet_monitor.exe' -ScriptBlock {
    param($WordToComplete, $CommandAst, $CursorPosition)
    $words = @($CommandAst.CommandElements | Select-Object -Skip 1 | ForEach-Object { $_.ToString() })
    if ($WordToComplete -ne '' -and $words.Count -gt 0 -and $words[-1] -eq $WordToComplete) {
        $words = @($words | Select-Object -First ($words.Count - 1))
    }
    $out = @(& kubectl_complete-dotnet_monitor @words $WordToComplete 2>$null)
    if ($LASTEXITCODE -ne 0) { return }
    $directive = 0
    if ($out.Count -gt 0 -and $out[-1] -match '^:(\d+)$') {
        $directive = [int]$Matches[1]
        $out = @($out | Select-Object -First ($out.Count - 1))
    }
    foreach ($line in $out) {
        if ($line -eq '') { continue }
        $parts = $line -split "`t", 2
        $desc = if ($parts.Count -gt 1 -and $parts[1] -ne '') { $parts[1] } else { $parts[0] }
        [System.Management.Automation.CompletionResult]::new($parts[0], $parts[0], 'ParameterValue', $desc)
    }
}
"""

SCRIPTS = {"bash": _BASH, "zsh": _ZSH, "fish": _FISH, "powershell": _POWERSHELL}


def completion_script(shell: str) -> str:
    """The completion script for ``shell`` (one of :data:`SHELLS`)."""
    return SCRIPTS[shell]


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print a shell completion script.

    kubectl 1.26+ completes `kubectl dotnet-monitor <TAB>` itself by running the helper
    kubectl_complete-dotnet_monitor from PATH; krew cannot install that helper, so add it once:

    \b
      # installed with krew (the executable doubles as the helper under that name):
      ln -s "$(command -v kubectl-dotnet_monitor)" ~/.local/bin/kubectl_complete-dotnet_monitor
      # Windows: copy kubectl-dotnet_monitor.exe to kubectl_complete-dotnet_monitor.exe on PATH
      # installed with pip/pipx: the helper is already on PATH next to the plugin

    The script printed here completes the plugin run directly as kubectl-dotnet_monitor,
    through the same helper.

    \b
    Examples:
      source <(kubectl dotnet-monitor completion bash)
      kubectl dotnet-monitor completion zsh > "${fpath[1]}/_kubectl-dotnet_monitor"
      kubectl dotnet-monitor completion fish | source
      kubectl dotnet-monitor completion powershell | Out-String | Invoke-Expression
    """
    click.echo(completion_script(shell), nl=False)


def register(group: click.Group) -> None:
    """Add the ``completion`` command to the root group (called by ``cli/app.py``)."""
    if "completion" not in group.commands:
        group.add_command(completion)


__all__ = [
    "Candidate",
    "complete",
    "complete_main",
    "completion",
    "completion_script",
    "register",
    "render",
    "resolve",
]
