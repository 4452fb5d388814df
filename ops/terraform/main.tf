# beads-sched on Kubernetes: a StatefulSet of two pods (one active, one
# standby; each with its store on a volume of its own), a disruption
# budget, a ConfigMap with the non-secret settings, a headless Service for
# the admin port and a NetworkPolicy in front of it. Same objects as ops/k8s; the
# deployment test (tests/integration/test_deploy.sh) checks both against
# the binary.

locals {
  name       = "beads-sched"
  labels     = { "app.kubernetes.io/name" = "beads-sched" }
  admin_port = 9464
  store_dir  = "/var/lib/beads-sched"

  # Non-secret settings. Every key must be a variable of
  # `beads-sched config --markdown`.
  settings = merge({
    BEADS_SCHED_DOLT_URL          = var.dolt_url
    BEADS_SCHED_AGENT_URL         = var.agent_url
    BEADS_SCHED_PROBE_INTERVAL    = var.probe_interval
    BEADS_SCHED_DISPATCH_INTERVAL = var.dispatch_interval
    BEADS_SCHED_REAP_INTERVAL     = var.reap_interval
    BEADS_SCHED_STALE_AFTER       = var.stale_after
    BEADS_SCHED_MAX_ATTEMPTS      = tostring(var.max_attempts)
    BEADS_SCHED_LISTEN            = "0.0.0.0:9464"
    BEADS_SCHED_LOG_FORMAT        = "json"
  }, var.extra_env)
}

resource "kubernetes_config_map_v1" "settings" {
  metadata {
    name      = local.name
    namespace = var.namespace
    labels    = local.labels
  }

  data = local.settings
}

resource "kubernetes_service_v1" "admin" {
  metadata {
    name      = local.name
    namespace = var.namespace
    labels    = local.labels
  }

  spec {
    # Headless: also the StatefulSet's governing Service.
    cluster_ip = "None"
    selector   = local.labels

    port {
      name        = "admin"
      port        = local.admin_port
      target_port = "admin"
    }
  }
}

# A StatefulSet (not a Deployment): a rollout stops the old pod before the
# new one starts, so two daemons never share the store.
resource "kubernetes_stateful_set_v1" "beads_sched" {
  metadata {
    name      = local.name
    namespace = var.namespace
    labels    = local.labels
  }

  # apply does not wait for readiness: the pod is unready while Dolt is
  # down, which is a state to operate (ops/RUNBOOK.md), not a failed apply.
  wait_for_rollout = false

  spec {
    # The kill switch: 0 replicas stops dispatching and reaping; the stores
    # stay on their volumes. Of the replicas, only the holder of the Dolt
    # lock is active; the others stand by.
    replicas              = var.enabled ? var.replicas : 0
    service_name          = kubernetes_service_v1.admin.metadata[0].name
    pod_management_policy = "Parallel"

    selector {
      match_labels = local.labels
    }

    template {
      metadata {
        labels = local.labels
        annotations = {
          "prometheus.io/scrape" = "true"
          "prometheus.io/port"   = "9464"
          "prometheus.io/path"   = "/metrics"
          # A settings change rolls the pod (envFrom is read at start only).
          "beads-sched/settings-sha256" = sha256(jsonencode(local.settings))
        }
      }

      spec {
        # Never two replicas on one node: a node's death must leave a standby.
        affinity {
          pod_anti_affinity {
            preferred_during_scheduling_ignored_during_execution {
              weight = 100
              pod_affinity_term {
                topology_key = "kubernetes.io/hostname"
                label_selector {
                  match_labels = local.labels
                }
              }
            }
          }
        }

        automount_service_account_token = false
        # The Service is named beads-sched: service links would inject
        # BEADS_SCHED_PORT, BEADS_SCHED_SERVICE_HOST, ... into the
        # daemon's configuration namespace.
        enable_service_links             = false
        termination_grace_period_seconds = 30

        security_context {
          run_as_non_root        = true
          run_as_user            = 10001
          run_as_group           = 10001
          fs_group               = 10001
          fs_group_change_policy = "OnRootMismatch"

          seccomp_profile {
            type = "RuntimeDefault"
          }
        }

        container {
          name  = "beads-sched"
          image = "${var.image_repository}:${var.image_tag}"
          args  = ["run"]

          env_from {
            config_map_ref {
              name = kubernetes_config_map_v1.settings.metadata[0].name
            }
          }

          env {
            name  = "BEADS_SCHED_STORE"
            value = "${local.store_dir}/beads-sched.db"
          }

          env {
            name  = "BEADS_SCHED_AGENT_TOKEN_FILE"
            value = "/run/secrets/agent-token/token"
          }

          env {
            name  = "BEADS_SCHED_DOLT_PASSWORD_FILE"
            value = "/run/secrets/dolt-password/password"
          }

          port {
            name           = "admin"
            container_port = local.admin_port
          }

          liveness_probe {
            http_get {
              path = "/healthz"
              port = "admin"
            }
            initial_delay_seconds = 5
            period_seconds        = 10
            timeout_seconds       = 3
            failure_threshold     = 3
          }

          readiness_probe {
            http_get {
              path = "/readyz"
              port = "admin"
            }
            period_seconds    = 10
            timeout_seconds   = 3
            failure_threshold = 3
          }

          resources {
            requests = var.resources.requests
            limits   = var.resources.limits
          }

          security_context {
            allow_privilege_escalation = false
            read_only_root_filesystem  = true

            capabilities {
              drop = ["ALL"]
            }
          }

          volume_mount {
            name       = "store"
            mount_path = local.store_dir
          }

          volume_mount {
            name       = "tmp"
            mount_path = "/tmp"
          }

          volume_mount {
            name       = "agent-token"
            mount_path = "/run/secrets/agent-token"
            read_only  = true
          }

          volume_mount {
            name       = "dolt-password"
            mount_path = "/run/secrets/dolt-password"
            read_only  = true
          }
        }

        # SQLite's temporary files (large sorts) on a read-only root.
        volume {
          name = "tmp"
          empty_dir {
            size_limit = "64Mi"
          }
        }

        volume {
          name = "agent-token"
          secret {
            secret_name  = var.agent_token_secret_name
            default_mode = "0440"
            items {
              key  = var.agent_token_secret_key
              path = "token"
            }
          }
        }

        volume {
          name = "dolt-password"
          secret {
            secret_name  = var.dolt_password_secret_name
            default_mode = "0440"
            items {
              key  = var.dolt_password_secret_key
              path = "password"
            }
          }
        }
      }
    }

    volume_claim_template {
      metadata {
        name   = "store"
        labels = local.labels
      }

      spec {
        access_modes       = ["ReadWriteOnce"]
        storage_class_name = var.storage_class_name

        resources {
          requests = {
            storage = var.storage_size
          }
        }
      }
    }
  }
}

# A drain or upgrade takes at most one replica at a time.
resource "kubernetes_pod_disruption_budget_v1" "beads_sched" {
  metadata {
    name      = local.name
    namespace = var.namespace
    labels    = local.labels
  }

  spec {
    max_unavailable = "1"
    selector {
      match_labels = local.labels
    }
  }
}

# Only Prometheus reaches the admin port (see ops/k8s/networkpolicy.yaml);
# kubelet probes come from the node and are admitted by the usual CNIs.
resource "kubernetes_network_policy_v1" "admin" {
  count = var.admin_network_policy ? 1 : 0

  metadata {
    name      = "${local.name}-admin"
    namespace = var.namespace
    labels    = local.labels
  }

  spec {
    pod_selector {
      match_labels = local.labels
    }
    policy_types = ["Ingress"]

    ingress {
      from {
        namespace_selector {
          match_labels = { "kubernetes.io/metadata.name" = var.prometheus_namespace }
        }
        pod_selector {
          match_labels = var.prometheus_pod_labels
        }
      }
      ports {
        protocol = "TCP"
        port     = tostring(local.admin_port)
      }
    }
  }
}

# Optional: the alert rules and the dashboard of ops/monitoring, in the form
# the community Prometheus and Grafana charts take (ops/monitoring/README.md).
resource "kubernetes_config_map_v1" "prometheus_rules" {
  count = var.monitoring ? 1 : 0

  metadata {
    name      = "${local.name}-prometheus-rules"
    namespace = coalesce(var.monitoring_namespace, var.namespace)
    labels    = local.labels
  }

  data = {
    "beads-sched.rules.yml" = file("${path.module}/../monitoring/alerts.yml")
  }
}

resource "kubernetes_config_map_v1" "dashboard" {
  count = var.monitoring ? 1 : 0

  metadata {
    name      = "${local.name}-dashboard"
    namespace = coalesce(var.monitoring_namespace, var.namespace)
    labels    = merge(local.labels, { "grafana_dashboard" = "1" })
  }

  data = {
    "beads-sched.json" = file("${path.module}/../monitoring/dashboard.json")
  }
}
