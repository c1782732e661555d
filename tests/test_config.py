from services.config import KefuConfig, load_config


def test_defaults_bind_loopback():
    cfg = load_config(env={})
    assert cfg == KefuConfig()
    assert cfg.host == "127.0.0.1"
    assert cfg.target("dialog") == "127.0.0.1:50051"


def test_file_then_environment(tmp_path):
    path = tmp_path / "kefu.yaml"
    path.write_text("ports:\n  dialog: 6000\n  nlu: 6001\ntelemetry:\n  exporter: console\nknowledge:\n  answerable_threshold: 0.4\n")
    cfg = load_config(path, env={"KEFU_PORTS_NLU": "7001", "KEFU_HOST": "127.0.0.2"})
    assert cfg.ports.dialog == 6000
    assert cfg.ports.nlu == 7001  # the environment wins over the file
    assert cfg.telemetry.exporter == "console"
    assert cfg.knowledge.answerable_threshold == 0.4
    assert cfg.target("nlu") == "127.0.0.2:7001"


def test_temporal_address_defaults_to_local_dev_server():
    cfg = load_config(env={"KEFU_PORTS_TEMPORAL": "7999"})
    assert cfg.temporal_address == "127.0.0.1:7999"
    cfg = load_config(env={"KEFU_TEMPORAL_ADDRESS": "temporal.example:7233"})
    assert cfg.temporal_address == "temporal.example:7233"


def test_cluster_addresses_and_bind_host():
    cfg = load_config(env={"KEFU_BIND_HOST": "0.0.0.0", "KEFU_ADDRESSES_NLU": "kefu-nlu:50052", "KEFU_ADDRESSES_TRITON": "triton:8001"})
    assert cfg.bind_address("nlu") == "0.0.0.0:50052"
    assert cfg.target("nlu") == "kefu-nlu:50052"
    assert cfg.target("knowledge") == "127.0.0.1:50053"
    assert cfg.triton_grpc_target == "triton:8001"


def test_to_env_round_trips(tmp_path):
    from services.config import to_env

    cfg = load_config(env={"KEFU_PORTS_NLU": "7001", "KEFU_GENERATION_BREAKER_RESET_S": "1.5", "KEFU_TELEMETRY_EXPORTER": "otlp"})
    assert load_config(env=to_env(cfg)) == cfg
