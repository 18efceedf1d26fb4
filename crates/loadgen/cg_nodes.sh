#!/usr/bin/env bash
# Instructions of cluster nodes run under callgrind by bench.sh (CALLGRIND_OUT=DIR, issue 15;
# BENCHMARKS.md, "Session 13"): per file, the total and the inclusive counts of the message
# path, each divided by MESSAGES (the run's issued messages; every node of a 2-node run sends
# and receives half of them), so two builds (AB_BIN) compare per message whatever the machine's load.
#
#   bash crates/loadgen/cg_nodes.sh MESSAGES DIR/node1.cg DIR/node2.cg
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cg_per_message.sh"
FUNCTIONS=('rcall_server::ws::cluster_send::{{closure}}' 'rcall_server::cluster::mailbox::Mailboxes::route::{{closure}}'
    'rcall_server::cluster::routing::follow::{{closure}}' 'rcall_server::cluster::routing::Routing::ack::{{closure}}'
    'rcall_server::cluster::keys::app_key' 'rcall_server::ws::write_or_abort::{{closure}}'
    'rcall_server::cluster::subscriber::Task::run::{{closure}}' 'redis::parser::aio_support::ValueCodec::decode_stream'
    'alloc::fmt::format::format_inner')
cg_line_of() { grep -F -- "???:$1 ["; }
cg_per_message "$@"
