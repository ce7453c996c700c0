"""MongoDB store: message actions (edit, delete, reaction), deduped by sender and client id.

Each action is first written whole to ``actions`` under its claim key (sender, client id), with
``done: false``, its effect's data and its pending items; then its effect is applied to the target's
``messages`` document (one update by ``_id``), its pending items inserted, and the claim marked done
(its copy of an edit's body dropped then).
A resend finds the claim: a finished one answers as a duplicate; one a crash left unfinished is
finished first (each step is idempotent), so an acked action is never half applied. A crash between an
edit's claim and its finishing, followed by a later edit and then the resend, would apply the first
edit again over the later one (the window is one write long).
"""

from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from chatmq.core.errors import StoreError
from chatmq.services.store.base import AcceptResult, NewAction
from chatmq.services.store.common import text_of
from chatmq.services.store.mongo.base import Doc, MongoBase, claim_key, mongo_errors, pending_doc
from chatmq.services.store.mongo.sessions import mark_doc


class MongoActions(MongoBase):
    """Message actions: a claim in ``actions``, the effect on ``messages``, the pending items."""

    async def apply_actions(self, actions: list[NewAction]) -> list[AcceptResult]:
        claims = self._coll("actions")
        results: list[AcceptResult] = []
        with mongo_errors():
            for a in actions:
                seqs = iter(await self._reserve_seqs(len(a.envelopes)))
                record: Doc = {
                    "_id": claim_key(a.sender, a.client_id), "sid": a.server_id, "ts": a.ts, "done": False,
                    "sender": a.sender, "kind": a.kind, "target": a.target, "body": a.body.decode(), "emoji": a.emoji,
                    "pending": [pending_doc(next(seqs), user, a.server_id, "message", env.decode())
                                for user, env in a.envelopes.items()],
                    # the sending device has its copy for the sender's other devices
                    "marks": [mark_doc(a.sender, a.server_id, a.device)] if a.device and a.sender in a.envelopes
                    else [],
                }
                try:
                    async with self._writes:
                        await claims.insert_one(record)
                except DuplicateKeyError:
                    earlier = await claims.find_one({"_id": record["_id"]})
                    if earlier is None:  # claims are never deleted
                        raise StoreError(f"the claim of action {(a.sender, a.client_id)!r} vanished") from None
                    if not earlier.get("done"):
                        await self._finish_action(earlier)
                    results.append(AcceptResult(str(earlier["sid"]), int(earlier["ts"]), duplicate=True))
                    continue
                await self._finish_action(record)
                results.append(AcceptResult(a.server_id, a.ts, duplicate=False))
        return results

    async def _finish_action(self, record: Doc) -> None:
        """Apply a claimed action's effect, insert its pending items, mark it done (each step may be
        repeated)."""
        messages, target, sender, ts = self._coll("messages"), record["target"], record["sender"], record["ts"]
        kind = record["kind"]
        async with self._writes:
            if kind == "edit":
                # ``text`` follows the body, so a search finds the new text, not the old
                text = text_of(record["body"].encode())
                change: Doc = {"$set": {"body": record["body"], "edited_at": ts}, "$addToSet": {"edits": record["sid"]}}
                if text is None:
                    change["$unset"] = {"text": ""}
                else:
                    change["$set"]["text"] = text
                await messages.update_one({"_id": target, "deleted": {"$ne": True}}, change)
            elif kind == "delete":
                doc = await messages.find_one_and_update(
                    {"_id": target}, {"$set": {"body": "{}", "deleted": True, "reactions": []},
                                      "$unset": {"text": ""}})
                # the bodies still waiting in inboxes go too: the message's copies and its edits'
                items = [target, *((doc or {}).get("edits") or [])]
                await self._coll("pending").delete_many({"item_id": {"$in": items}, "kind": "message"})
            elif kind == "hide":
                await messages.update_one({"_id": target}, {"$addToSet": {"hidden_for": sender}})
            elif kind == "react":
                await messages.update_one({"_id": target, "deleted": {"$ne": True}},
                                          {"$addToSet": {"reactions": {"u": sender, "e": record["emoji"]}}})
            else:
                await messages.update_one({"_id": target},
                                          {"$pull": {"reactions": {"u": sender, "e": record["emoji"]}}})
        await self._insert_new("device_marks", record.get("marks") or [])  # before the items: never unmarked
        await self._insert_pending(record["pending"])
        async with self._writes:
            await self._coll("actions").update_one({"_id": record["_id"]},
                                                   {"$set": {"done": True, "pending": [], "marks": [], "body": ""}})
