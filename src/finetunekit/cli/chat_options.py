"""Parser pieces of the chat commands (standard library only: building the parser stays cheap)."""

import argparse
import textwrap

from finetunekit.cli.args import positive_int

# The names of keras-hub's samplers that `InstructionHead.generate(strategy=...)` takes.
STRATEGIES = ("greedy", "top_k", "top_p", "random", "beam")


def add_generation_options(parser):
    """`--max-new-tokens`, `--strategy` and `--data` (prompts) of `predict` for chat models."""
    parser.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=None,
        help="chat models: longest answer in tokens (default: 64)",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=None,
        help="chat models: how tokens are chosen (default: greedy)",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="chat models: a .txt file of prompts (one a line) or a .json/.jsonl file of "
        'prompts (strings, {"prompt": ...} or {"messages": [...]} ending with a user turn)',
    )


def add_chat_command(commands, formatter_class=argparse.HelpFormatter):
    """The `chat` sub-command: a terminal conversation with a chat model."""
    chat = commands.add_parser(
        "chat",
        help="talk to a chat model saved by 'finetunekit fit --task chat'",
        description=textwrap.fill(
            "Reads one user message a line from stdin (a terminal or a pipe) and prints each "
            "answer; the conversation so far is kept across turns. Ends at end of input, an "
            "empty line or /exit.",
            width=79,
        ),
        epilog='Example:\n  finetunekit chat assistant.keras --system "Be brief."',
        formatter_class=formatter_class,
    )
    chat.add_argument(
        "model", metavar="MODEL", help="a chat model (.keras) with an InstructionHead"
    )
    chat.add_argument("--system", default=None, help="a system message opening the conversation")
    chat.add_argument(
        "--max-new-tokens", type=positive_int, default=64, help="longest answer in tokens"
    )
    chat.add_argument("--strategy", choices=STRATEGIES, default="greedy", help="sampler")
    chat.add_argument("--seed", type=int, default=None, help="seed of the sampling strategies")
    chat.set_defaults(handler=("finetunekit.cli.chat", "run_chat"))
