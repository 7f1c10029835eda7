//! The end-to-end suites as one test binary, `e2e` (one link instead of one per suite): each
//! module is an area, its tests named `area::test`. Which key backend and store the dev daemons
//! use comes from the environment (`VAULT_TEST_BACKEND`, `VAULT_TEST_STORE`), and
//! `scripts/test.sh` runs the core areas again on each by module name. New suites go here as a
//! module.

mod abuse_limits;
mod alerts_follow;
mod audit_offline;
mod authorization;
mod backup;
mod batch;
mod bench_tool;
mod carry_out;
mod cli;
mod cluster;
mod conformance;
mod connections;
mod console;
mod corrections;
mod deploy;
mod destruction;
mod disclosure;
mod disk_full;
mod dual_control;
mod durability;
mod error_details;
mod fail_closed;
mod leaks;
mod lifecycle;
mod live_tamper;
mod metrics;
mod package;
mod postgres_harness;
mod postgres_tls;
mod printable;
mod python_client;
mod python_guide;
mod readme;
mod record_purposes;
mod records;
mod reports;
mod rotation;
mod signals;
mod stall;
mod startup;
mod store_conformance;
mod structure;
mod suspension;
mod tamper;
mod token_loss;
mod untrusted_store;
