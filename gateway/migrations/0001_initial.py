
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('quotas', '0006_bounds_checks'),
        ('wallets', '0010_schedule_ledger_check'),
    ]

    operations = [
        migrations.CreateModel(
            name='MeteredRoute',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('method', models.CharField(choices=[('*', 'any method'), ('GET', 'Get'), ('HEAD', 'Head'), ('POST', 'Post'), ('PUT', 'Put'), ('PATCH', 'Patch'), ('DELETE', 'Delete'), ('OPTIONS', 'Options')], default='*', max_length=7)),
                ('path_prefix', models.CharField(help_text='Starts with "/"; whole segments.', max_length=200)),
                ('price', models.BigIntegerField()),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('resource_type', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='metered_routes', to='quotas.resourcetype')),
            ],
            options={
                'ordering': ['path_prefix', 'method'],
            },
        ),
        migrations.CreateModel(
            name='GatewayCharge',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('request_id', models.CharField(max_length=255)),
                ('amount', models.BigIntegerField()),
                ('fingerprint', models.CharField(max_length=64)),
                ('created_at', models.DateTimeField()),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='gateway_charges', to='wallets.project')),
                ('route', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='charges', to='gateway.meteredroute')),
            ],
        ),
        migrations.AddConstraint(
            model_name='meteredroute',
            constraint=models.UniqueConstraint(fields=('method', 'path_prefix'), name='metered_route_method_prefix_unique'),
        ),
        migrations.AddConstraint(
            model_name='meteredroute',
            constraint=models.CheckConstraint(condition=models.Q(('price__gt', 0), ('price__lte', 1000000000000000000)), name='metered_route_price_within_bounds'),
        ),
        migrations.AddConstraint(
            model_name='meteredroute',
            constraint=models.CheckConstraint(condition=models.Q(('path_prefix__startswith', '/')), name='metered_route_prefix_absolute'),
        ),
        migrations.AddConstraint(
            model_name='gatewaycharge',
            constraint=models.UniqueConstraint(fields=('project', 'request_id'), name='gateway_charge_request_unique'),
        ),
        migrations.AddConstraint(
            model_name='gatewaycharge',
            constraint=models.CheckConstraint(condition=models.Q(('amount__gt', 0), ('amount__lte', 1000000000000000000)), name='gateway_charge_amount_within_bounds'),
        ),
    ]
