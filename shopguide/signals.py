"""Signals other code can listen to."""

from django.dispatch import Signal

# Sent after a recommender version became the active one (kwargs: model).
model_activated = Signal()

# Sent after the serving product vectors changed: a whole rescore swapped in (kwargs: rescore)
# or one product was re-encoded (rescore=None).
vectors_replaced = Signal()

# Sent by shopguide_forget_user after shopguide deleted a user's events (kwargs: user,
# session_keys): the shop deletes what it keeps of those sessions (search logs, ...).
user_forgotten = Signal()
