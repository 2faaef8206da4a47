"""profiles bound to their model; search log rows keyed by a request uid

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 15:00:00

- ``profiles.model_dims`` / ``model_config_sha256``: the model the table was measured for (dims text as
  ``core.search.pipeline.ModelFingerprint.dims``, config hash when the table records one), backfilled from the
  stored documents; ``profiles.checkpoint_sha256``: the checkpoint served when it was uploaded (unknown for old rows).
- ``searches.uid``: the answer's ``search_id``, known before the row is written (the log is written off the request path).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def _dims(m: dict) -> str:  # type: ignore[type-arg]
    """The same text as ModelFingerprint.dims (kept inline: a migration must not change when the code does)."""
    return (f"{m['model_type']} L{m['num_layers']} h{m['hidden_size']} heads{m['num_heads']}/kv{m['num_kv_heads']} "
            f"d{m['head_dim']} ffn{m['intermediate_size']} vocab{m['vocab_size']}")


def upgrade() -> None:
    with op.batch_alter_table('profiles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('model_dims', sa.String(length=160), nullable=True))
        batch_op.add_column(sa.Column('model_config_sha256', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('checkpoint_sha256', sa.String(length=64), nullable=True))
    conn = op.get_bind()
    profiles = sa.table('profiles', sa.column('id', sa.Integer), sa.column('document', sa.JSON), sa.column('model_dims', sa.String),
                        sa.column('model_config_sha256', sa.String))
    for pid, doc in conn.execute(sa.select(profiles.c.id, profiles.c.document)).all():
        m = (doc or {}).get('model') or {}
        try:
            dims = _dims(m)
        except KeyError:
            dims = 'unknown'
        conn.execute(profiles.update().where(profiles.c.id == pid).values(model_dims=dims, model_config_sha256=m.get('config_sha256')))
    with op.batch_alter_table('profiles', schema=None) as batch_op:
        batch_op.alter_column('model_dims', existing_type=sa.String(length=160), nullable=False)
        batch_op.create_index(batch_op.f('ix_profiles_model_dims'), ['model_dims'], unique=False)
    with op.batch_alter_table('searches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('uid', sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_searches_uid'), ['uid'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('searches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_searches_uid'))
        batch_op.drop_column('uid')
    with op.batch_alter_table('profiles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_profiles_model_dims'))
        batch_op.drop_column('checkpoint_sha256')
        batch_op.drop_column('model_config_sha256')
        batch_op.drop_column('model_dims')
