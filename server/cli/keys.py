"""`orch keys create|list|revoke`: the API keys the server accepts, stored hashed."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from typing import Any

from orch.server.cli.common import COMPLETED, NOT_FOUND, CliError, add_db, command, open_store, print_json, settings_of
from orch.server.cli.runs import local_time, when


async def keys(args: argparse.Namespace) -> int:
    from orch.server.auth import generate_key, hash_key

    store = await open_store(settings_of(args))
    try:
        if args.action == "create":
            key, key_id = generate_key(), secrets.token_hex(8)
            await store.add_api_key(key_id, args.name or "", hash_key(key))
            if args.json:
                print_json({"id": key_id, "name": args.name or "", "key": key})
            else:
                print(key, flush=True)
                print(f"key {key_id} created; store it now: only its hash is kept", file=sys.stderr)
            return COMPLETED
        if args.action == "list":
            listed = await store.api_keys()
            if args.json:
                print_json([{"id": k.id, "name": k.name, "created_at": when(k.created_at)} for k in listed])
            else:
                for k in listed:
                    print(f"{k.id}  {local_time(k.created_at)}  {k.name}".rstrip())
            return COMPLETED
        if not args.key_id:
            raise CliError("keys revoke needs the id of a key (see orch keys list)", 2)
        if not await store.revoke_api_key(args.key_id):
            raise CliError(f"no API key has the id '{args.key_id}'", NOT_FOUND)
        print(f"key {args.key_id} revoked: servers refuse it within 5 seconds")
        return COMPLETED
    finally:
        await store.close()


def register(sub: Any) -> None:
    p = command(sub, "keys", "create, list or revoke API keys (a key is printed once; only its hash is stored)",
                "KEY=$(orch keys create --name ci)\norch keys list --json\norch keys revoke 3f9a1c0d2b7e4a55")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("key_id", nargs="?", help="revoke: the key's id (from orch keys list)")
    p.add_argument("--name", help="create: a name to tell the key by")
    p.add_argument("--json", action="store_true", help="print JSON (docs/operations.md has the shapes)")
    add_db(p)
    p.set_defaults(func=lambda a: asyncio.run(keys(a)))
