"""The admin app with our site as its default site (settings.INSTALLED_APPS names it instead of
django.contrib.admin). A module of its own: the app registry imports it before any model is loaded,
so it may import nothing but the AppConfig; the site is named by its path and loaded later."""

from django.contrib.admin.apps import AdminConfig


class StaffAdminConfig(AdminConfig):
    default_site = "portal.admin_site.StaffAdminSite"
