package runtime

import "slices"

// KumoMTA's Lua API by name, as data: the pages of KumoMTA's reference
// documentation (docs/reference/kumo/*, docs/reference/kumo.<module>/*,
// docs/reference/string, docs/reference/regex, docs/reference/events,
// docs/reference/message, docs/reference/address,
// docs/reference/connectionmeta.md). compatapi.go compares it with what kumogo
// registers; docs/compat.md is generated from both (kumogo --dump-api).

// kumoAPIFunctions lists KumoMTA's functions by module table.
var kumoAPIFunctions = map[string][]string{
	"kumo": {
		"apply_supplemental_trace_header", "available_parallelism", "bump_config_epoch",
		"compute_egress_path_config_constraints", "compute_queue_config_constraints",
		"configure_accounting_db_path", "configure_bounce_classifier", "configure_local_logs",
		"configure_log_hook", "configure_redis_throttles", "define_spool", "disconnect",
		"eval_config_monitor_globs", "format_egress_path_config_constraints",
		"format_egress_path_config_toml", "format_queue_config_toml", "generate_rfc3464_message",
		"get_memory_hard_limit", "get_memory_low_thresh", "get_memory_soft_limit", "glob",
		"inject_message", "invoke_get_egress_path_config", "invoke_get_egress_pool",
		"invoke_get_egress_source", "invoke_get_queue_config", "json_encode", "json_encode_pretty",
		"json_load", "json_parse", "log_debug", "log_error", "log_info", "log_warn", "make_egress_path",
		"make_egress_pool", "make_egress_source", "make_listener_domain", "make_message",
		"make_queue_config", "make_throttle", "memoize", "on", "read_dir", "reject",
		"set_config_monitor_globs", "set_diagnostic_log_filter", "set_httpinject_recipient_rate_limit",
		"set_httpinject_threads", "set_logging_threads", "set_lruttl_cache_capacity",
		"set_max_lua_context_age", "set_max_lua_context_use_count", "set_max_spare_lua_contexts",
		"set_memory_hard_limit", "set_memory_low_thresh", "set_memory_soft_limit", "set_qmaint_threads",
		"set_ready_qmaint_threads", "set_readyq_threads", "set_smtpsrv_threads", "set_spoolin_threads",
		"sleep", "spawn_task", "start_esmtp_listener", "start_http_listener",
		"suspend_delivery_when_spool_unhealthy", "toml_encode", "toml_encode_pretty", "toml_load",
		"toml_parse", "uncached_glob",
	},
	"kumo.aaa": {
		"auth_info", "configure_acct_log", "load_acl_map", "make_access_control_list",
		"make_http_url_resource", "query_resource_access", "set_acl_cache_ttl", "set_check_cache_ttl",
		"set_fall_back_to_acl_map",
	},
	"kumo.amqp": {
		"basic_publish", "build_client",
	},
	"kumo.api.inject": {
		"inject_v1",
	},
	"kumo.cidr": {
		"make_map",
	},
	"kumo.counter_series": {
		"define", "delta", "increment", "observe", "sum", "sum_over",
	},
	"kumo.crypto": {
		"aes_decrypt_block", "aes_encrypt_block", "aws_sign_v4",
	},
	"kumo.digest": {
		"crc32", "hmac_sha1", "hmac_sha224", "hmac_sha256", "hmac_sha384", "hmac_sha512", "sha1",
		"sha224", "sha256", "sha384", "sha3_256", "sha3_384", "sha3_512", "sha512", "sha512_256",
	},
	"kumo.dkim": {
		"ed25519_signer", "rsa_sha256_signer", "set_signing_threads",
	},
	"kumo.dns": {
		"configure_resolver", "configure_unbound_resolver", "define_resolver", "load_resolv_conf",
		"lookup_addr", "lookup_mx", "lookup_ptr", "lookup_txt", "ptr_host", "rbl_lookup",
		"resolver_options", "reverse_ip", "set_mta_sts_enabled", "set_mx_concurrency_limit",
		"set_mx_negative_cache_ttl", "set_mx_timeout",
	},
	"kumo.domain_map": {
		"new",
	},
	"kumo.encode": {
		"base32_decode", "base32_encode", "base32_nopad_decode", "base32_nopad_encode",
		"base32hex_decode", "base32hex_encode", "base32hex_nopad_decode", "base32hex_nopad_encode",
		"base64_decode", "base64_encode", "base64_nopad_decode", "base64_nopad_encode",
		"base64url_decode", "base64url_encode", "base64url_nopad_decode", "base64url_nopad_encode",
		"charset_decode", "charset_encode", "hex_decode", "hex_encode",
	},
	"kumo.file_type": {
		"from_bytes", "from_extension", "from_media_type",
	},
	"kumo.fs": {
		"glob", "metadata_for_path", "open", "read_dir", "symlink_metadata_for_path", "uncached_glob",
	},
	"kumo.http": {
		"build_client", "build_url", "connect_websocket",
	},
	"kumo.jsonl": {
		"new_multi_tailer", "new_tailer", "new_writer",
	},
	"kumo.kafka": {
		"build_producer",
	},
	"kumo.mimepart": {
		"builder", "new_binary", "new_html", "new_multipart", "new_text", "new_text_plain", "parse",
	},
	"kumo.mpsc": {
		"define",
	},
	"kumo.nats": {
		"close", "connect", "publish",
	},
	"kumo.regex": {
		"compile", "escape",
	},
	"kumo.regex_set_map": {
		"new",
	},
	"kumo.secrets": {
		"load",
	},
	"kumo.serde": {
		"json_encode", "json_encode_pretty", "json_load", "json_parse", "toml_encode",
		"toml_encode_pretty", "toml_encode_pretty_compact", "toml_load", "toml_parse", "yaml_encode",
		"yaml_load", "yaml_parse",
	},
	"kumo.shaping": {
		"load",
	},
	"kumo.spf": {
		"check_host", "check_msg",
	},
	"kumo.string": {
		"ends_with", "eval_template", "normalize_smtp_response", "psl_domain", "psl_suffix", "replace",
		"replacen", "rsplit", "rsplitn", "split", "split_ascii_whitespace", "split_whitespace", "splitn",
		"starts_with", "trim", "trim_end", "trim_start", "wrap",
	},
	"kumo.time": {
		"from_unix_timestamp", "now", "parse_duration", "parse_rfc2822", "parse_rfc3339", "sleep",
		"start_timer", "with_ymd_hms",
	},
	"kumo.uuid": {
		"new_v1", "new_v4", "new_v6", "new_v7", "parse",
	},
	"kumo.xfer": {
		"cancel_xfer", "get_xfer_target", "xfer", "xfer_in_requeue",
	},
}

// kumoAPIEvents are KumoMTA's predefined events.
var kumoAPIEvents = []string{
	"get_acl_definition", "get_egress_path_config", "get_egress_pool", "get_egress_source",
	"get_listener_domain", "get_queue_config", "http_message_generated",
	"http_server_validate_auth_basic", "init", "pre_init", "proxy_init", "proxy_server_auth_rfc1929",
	"rebind_message", "requeue_message", "should_enqueue_log_record", "shutdown_logging",
	"smtp_client_rewrite_delivery_status", "smtp_server_auth_plain",
	"smtp_server_connection_accepted", "smtp_server_data", "smtp_server_ehlo",
	"smtp_server_get_dynamic_parameters", "smtp_server_mail_from",
	"smtp_server_message_deferred_inject", "smtp_server_message_received", "smtp_server_rcpt_to",
	"smtp_server_rewrite_response", "smtp_server_split_transaction", "spool_message_enumerated",
	"throttle_insert_ready_queue", "tsa_init", "tsa_load_shaping_data", "xfer_message_received",
}

// kumoAPIMessageMethods are the methods of KumoMTA's Message object.
var kumoAPIMessageMethods = []string{
	"add_authentication_results", "append_header", "append_text_html", "append_text_plain",
	"arc_seal", "arc_verify", "check_fix_conformance", "dkim_sign", "dkim_verify", "from_header",
	"get_address_header", "get_all_headers", "get_all_named_header_values", "get_data",
	"get_first_named_header_value", "get_meta", "id", "import_headers", "import_scheduling_header",
	"import_x_headers", "increment_num_attempts", "num_attempts", "parse_mime", "parse_rfc3464",
	"prepend_header", "queue_name", "recipient", "recipient_list", "remove_all_named_headers",
	"remove_x_headers", "save", "sender", "set_data", "set_due", "set_force_sync", "set_meta",
	"set_recipient", "set_scheduling", "set_sender", "shrink", "shrink_data", "to_header",
}

// kumoAPIConnMethods are the methods of KumoMTA's connection metadata object.
var kumoAPIConnMethods = []string{
	"get_meta", "set_meta", "auth_info",
}

// kumoAPIAddressFields are the fields of KumoMTA's EnvelopeAddress object.
var kumoAPIAddressFields = []string{
	"domain", "email", "user",
}

// kumoAPIUndocumented are KumoMTA functions that its policies and
// integration tests call but its reference pages do not list
// (kumomta-model.md, "kumo.* functions").
var kumoAPIUndocumented = map[string][]string{
	"kumo": {"traceback", "validation_failed", "get_event_registrars", "set_lua_gc_on_put",
		"spawn_thread_pool", "inject_message", "configure_log_disposition_hook"},
	"kumo.dns":                       {"configure_test_resolver", "configure_test_mta_sts"},
	"kumo.api.admin.bounce":          {"bounce", "delete", "list"},
	"kumo.api.admin.suspend":         {"delete", "list", "suspend"},
	"kumo.api.admin.suspend_ready_q": {"delete", "list", "suspend"},
}

// apiFunctions is every KumoMTA function name by module table.
func apiFunctions() map[string][]string {
	out := make(map[string][]string, len(kumoAPIFunctions)+len(kumoAPIUndocumented))
	for m, names := range kumoAPIFunctions {
		out[m] = append(out[m], names...)
	}
	for m, names := range kumoAPIUndocumented {
		for _, n := range names {
			if !slices.Contains(out[m], n) {
				out[m] = append(out[m], n)
			}
		}
		slices.Sort(out[m])
	}
	return out
}

// kumoAPIObjectMethods are the methods and fields of KumoMTA's other
// object types (docs/reference/header, headermap, mimepart and
// addressheader), which kumogo does not have yet.
var kumoAPIObjectMethods = map[string][]string{
	"AddressHeader": {
		"domain", "email", "list", "name", "user",
	},
	"Header": {
		"address_list", "authentication_results", "mailbox_list", "message_id", "message_id_list",
		"mime_params", "name", "raw_value", "unstructured", "value",
	},
	"HeaderMap": {
		"append", "bcc", "cc", "comments", "content_disposition", "content_id",
		"content_transfer_encoding", "content_type", "from", "get_first_named", "iter", "message_id",
		"mime_version", "prepend", "references", "remove_all_named", "reply_to", "resent_bcc",
		"resent_cc", "resent_from", "resent_sender", "sender", "set_bcc", "set_cc", "set_comments",
		"set_content_disposition", "set_content_id", "set_content_transfer_encoding", "set_content_type",
		"set_from", "set_message_id", "set_mime_version", "set_references", "set_reply_to",
		"set_resent_bcc", "set_resent_cc", "set_resent_from", "set_resent_sender", "set_resent_to",
		"set_sender", "set_subject", "set_to", "subject", "to",
	},
	"MimePart": {
		"append_part", "body", "get_simple_structure", "headers", "id", "rebuild", "replace_body",
	},
}
