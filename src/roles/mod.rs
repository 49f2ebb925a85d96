//! Roles: settings + facts → resources.
