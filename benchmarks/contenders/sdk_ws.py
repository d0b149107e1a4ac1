"""sdk_ws: ``CadenzaClient(cancel_via="ws")``: the cancel is a Centrifugo RPC on the open stream."""

from __future__ import annotations

from .sdk_http import SdkClient


class SdkWsClient(SdkClient):
    name = "sdk_ws"
    cancel_via = "ws"


def make() -> SdkWsClient:
    return SdkWsClient()
