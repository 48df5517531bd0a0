"""Launching Dagster runs through a running stack's webserver, as a user clicking in the UI
would (GraphQL), for the integration tests."""

from __future__ import annotations

import json
from typing import Any

import httpx

from binlake.local_stack.stack import LocalStack

_REPOSITORIES = """
query { repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }
"""
_LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
_RUN_STATUS = """
query Status($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }
"""


def graphql(stack: LocalStack, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(
        f"{stack.dagster_url}/graphql",
        json={"query": query, "variables": variables or {}},
        timeout=60,
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def launch_run(
    stack: LocalStack,
    job_name: str,
    *,
    run_config: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    **selection: Any,
) -> str:
    """Launch `job_name` of the stack's one code location; its run id. `selection` adds to the
    selector (e.g. `assetCheckSelection` for the asset job)."""
    [repository] = graphql(stack, _REPOSITORIES)["repositoriesOrError"]["nodes"]
    params: dict[str, Any] = {
        "selector": {
            "repositoryLocationName": repository["location"]["name"],
            "repositoryName": repository["name"],
            "jobName": job_name,
            **selection,
        }
    }
    if run_config is not None:
        params["runConfigData"] = json.dumps(run_config)
    if tags:
        params["executionMetadata"] = {"tags": [{"key": k, "value": v} for k, v in tags.items()]}
    result = graphql(stack, _LAUNCH, {"params": params})["launchPipelineExecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def run_status(stack: LocalStack, run_id: str) -> str:
    return graphql(stack, _RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
