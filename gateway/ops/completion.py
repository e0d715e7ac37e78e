"""`mqtt-gateway completion bash|zsh`: shell completion scripts, from the parser's own table.

`Spec` is what the command line accepts: each command with its options, and for
each option what follows it (a fixed list of words, a file, a directory, or
nothing for a flag). The scripts are plain text built from it, so a new option
is completed as soon as the parser has it. Pure; the bash script uses nothing
but `compgen` (no bash-completion package needed).
"""

from __future__ import annotations

from dataclasses import dataclass

FILE = "file"
DIR = "dir"
FLAG = "flag"


@dataclass(frozen=True)
class Option:
    """One option of a command: `value` is FILE, DIR, FLAG or a tuple of words."""

    name: str
    value: str | tuple[str, ...]
    help: str = ""


@dataclass(frozen=True)
class Command:
    """One command, its options and what its positional argument is (None: none)."""

    name: str
    help: str
    options: tuple[Option, ...]
    positional: str | tuple[str, ...] | None = None


Spec = tuple[Command, ...]


def bash_script(spec: Spec, prog: str = "mqtt-gateway") -> str:
    """A bash completion script defining `_mqtt_gateway` and registering it for `prog`."""
    names = " ".join(c.name for c in spec)
    values, opts, positional = [], [], []
    for command in spec:
        opts.append(f'        {command.name}) opts="'
                    f'{" ".join(o.name for o in command.options)} --help" ;;')
        for option in command.options:
            if option.value != FLAG:
                values.append(f'        "{command.name} {option.name}") {_bash_words(option.value)}')
        if command.positional is not None:
            positional.append(f"        {command.name}) {_bash_words(command.positional)}")
    return f"""# bash completion for {prog}: eval "$({prog} completion bash)", or save it as
# /etc/bash_completion.d/{prog} (or ~/.local/share/bash-completion/completions/{prog}).
_mqtt_gateway() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" opts=""
    COMPREPLY=()
    if [ "$COMP_CWORD" -le 1 ]; then
        COMPREPLY=($(compgen -W "{names} --help --version" -- "$cur"))
        return 0
    fi
    local command="${{COMP_WORDS[1]}}"
    case "$command $prev" in
{chr(10).join(values)}
    esac
    case "$command" in
{chr(10).join(opts)}
        *) return 0 ;;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return 0
    fi
    case "$command" in
{chr(10).join(positional)}
    esac
    return 0
}}
complete -F _mqtt_gateway {prog}
"""


def _bash_words(value: str | tuple[str, ...]) -> str:
    if value == FILE:
        return 'COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;'
    if value == DIR:
        return 'COMPREPLY=($(compgen -d -- "$cur")); return 0 ;;'
    return f'COMPREPLY=($(compgen -W "{" ".join(value)}" -- "$cur")); return 0 ;;'


def zsh_script(spec: Spec, prog: str = "mqtt-gateway") -> str:
    """A zsh completion function (`#compdef`), using `_arguments` per command."""
    described = "\n".join(f"    '{c.name}:{_zsh_text(c.help)}'" for c in spec)
    cases = []
    for command in spec:
        args = [f"'{o.name}[{_zsh_text(o.help)}]{_zsh_value(o)}'" for o in command.options]
        if command.positional is not None:
            args.append(f"'1:argument:{_zsh_action(command.positional)}'")
        joined = " \\\n            ".join(["'(- *)--help[show the help]'", *args])
        cases.append(f"        {command.name})\n            _arguments {joined} ;;")
    return f"""#compdef {prog}
# zsh completion for {prog}: save as _{prog} in a directory of $fpath
# (e.g. {prog} completion zsh > ~/.zfunc/_{prog}; fpath+=~/.zfunc; compinit).
_mqtt_gateway() {{
  local -a commands
  commands=(
{described}
  )
  if (( CURRENT == 2 )); then
    _describe -t commands '{prog} command' commands
    return
  fi
  shift words
  (( CURRENT-- ))
  case "${{words[1]}}" in
{chr(10).join(cases)}
  esac
}}
_mqtt_gateway "$@"
"""


def _zsh_text(text: str) -> str:
    return text.replace("'", "").replace("[", "(").replace("]", ")").replace(":", " -")


def _zsh_value(option: Option) -> str:
    if option.value == FLAG:
        return ""
    return f":{option.name.lstrip('-')}:{_zsh_action(option.value)}"


def _zsh_action(value: str | tuple[str, ...]) -> str:
    if value == FILE:
        return "_files"
    if value == DIR:
        return "_files -/"
    return f"({' '.join(value)})"
