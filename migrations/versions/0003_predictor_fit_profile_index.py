"""index predictor_fits.profile_id (the search fast path joins profiles to their fit)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 15:30:00
"""

from __future__ import annotations

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('predictor_fits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_predictor_fits_profile_id'), ['profile_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('predictor_fits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_predictor_fits_profile_id'))
