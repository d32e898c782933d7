"""``mlmkit push``: upload a run directory to the Hugging Face Hub."""

# Library imports (mlmkit's other layers and their dependencies) sit inside the functions that use them, so that
# `mlmkit --help` imports only this layer.

from __future__ import annotations

import typer

from mlmkit.cli.common import out_console, print_json, user_errors


@user_errors
def push_command(
    run_dir: str = typer.Argument(..., help="A finished run directory (model, tokenizer, model card)."),
    repo_id: str = typer.Option(..., "--repo-id", help="Hub repository, e.g. your-name/minilm-tweets-mlm."),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
    revision: str = typer.Option(None, "--revision", help="Branch to upload to (created if missing)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create the Hub repository if needed and upload the run (checkpoints and tracker logs stay local)."""
    from mlmkit.training.hub import push_run

    url = push_run(run_dir, repo_id, private=private, revision=revision)
    if as_json:
        print_json({"run_dir": run_dir, "repo_id": repo_id, "revision": revision, "url": url})
    else:
        out_console.print(f"pushed {run_dir} to {url}", highlight=False, soft_wrap=True)
