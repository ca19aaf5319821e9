"""Migration operations that turn decimal columns into integers at a fixed scale, on both backends.

Used by the migrations that moved quantities to micro-units and rates to pico-credits (quotas 0005,
metering 0005, billing 0006). Keep it stable: those migrations run it as it is written here.

Per column: make the decimal column nullable, add an integer column beside it, fill it with one
set-based UPDATE (round(value × factor), which also repairs float noise SQLite accumulated, e.g.
5.55e-17 left by 0.3 + 0.6 - 0.3), drop the decimal column and give the integer one its name.
PostgreSQL's `ALTER COLUMN … TYPE bigint USING` would do it in place, but SQLite cannot alter a
column's type, and one portable sequence is easier to trust than two. Every step has a reverse, so
the migration can be unapplied (the decimals come back as value / factor).
"""

from django.db import migrations, models


def scale_columns(*, model_name: str, table: str, columns: list[tuple[str, models.Field, models.Field, int]],
                  constraints: list[models.BaseConstraint]) -> list[migrations.operations.base.Operation]:
    """Operations converting each (name, old decimal field, new integer field, factor) of one model.

    constraints: the model's check constraints that mention any of the columns; they are dropped for
    the conversion and added again (with the same meaning in the new unit) at the end.
    """
    operations: list = [migrations.RemoveConstraint(model_name=model_name, name=c.name) for c in constraints]
    for name, old, _new, _factor in columns:
        nullable = old.clone()
        nullable.null = True
        operations += [
            migrations.AlterField(model_name=model_name, name=name, field=nullable),
            migrations.AddField(model_name=model_name, name=f"{name}_scaled", field=models.BigIntegerField(null=True)),
        ]
    forward = ", ".join(f'"{name}_scaled" = CAST(ROUND("{name}" * {factor}) AS BIGINT)' for name, _, _, factor in columns)
    # "/ factor.0": a decimal division on PostgreSQL (exact) and a real one on SQLite (not an integer one).
    backward = ", ".join(f'"{name}" = "{name}_scaled" / {factor}.0' for name, _, _, factor in columns)
    operations.append(migrations.RunSQL(f'UPDATE "{table}" SET {forward}', f'UPDATE "{table}" SET {backward}'))
    for name, _old, new, _factor in columns:
        operations += [
            migrations.RemoveField(model_name=model_name, name=name),
            migrations.RenameField(model_name=model_name, old_name=f"{name}_scaled", new_name=name),
            migrations.AlterField(model_name=model_name, name=name, field=new),
        ]
    operations += [migrations.AddConstraint(model_name=model_name, constraint=c) for c in constraints]
    return operations
