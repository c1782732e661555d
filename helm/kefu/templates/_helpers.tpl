{{/* Chart name, truncated to the 63 characters Kubernetes allows. */}}
{{- define "kefu.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; components append "-<component>", so keep room for it. */}}
{{- define "kefu.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kefu.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every pod of the release carries; NetworkPolicies select on them. */}}
{{- define "kefu.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kefu.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kefu.labels" -}}
helm.sh/chart: {{ include "kefu.chart" . }}
{{ include "kefu.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kefu
{{- end }}

{{/* Labels of one component: include "kefu.componentLabels" (list $ "dialog") */}}
{{- define "kefu.componentLabels" -}}
{{- $ := index . 0 -}}
{{ include "kefu.labels" $ }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "kefu.componentSelector" -}}
{{- $ := index . 0 -}}
{{ include "kefu.selectorLabels" $ }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "kefu.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "kefu.configName" -}}
{{- printf "%s-config" (include "kefu.fullname" .) }}
{{- end }}

{{- define "kefu.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kefu.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding credentials: yours (credentials.existingSecret) or the chart's. */}}
{{- define "kefu.credentialsSecret" -}}
{{- default (printf "%s-credentials" (include "kefu.fullname" .)) .Values.credentials.existingSecret }}
{{- end }}

{{/* "true" when Triton serves the LLM with TensorRT-LLM on GPUs (triton.profile: gpu). */}}
{{- define "kefu.gpu" -}}
{{- if eq .Values.triton.profile "gpu" }}true{{ end }}
{{- end }}

{{/* host:port of the Temporal frontend: the bundled dev server, or temporal.address. */}}
{{- define "kefu.temporalAddress" -}}
{{- if .Values.demo.temporal.enabled }}
{{- printf "%s-temporal:%d" (include "kefu.fullname" .) (int .Values.demo.temporal.port) }}
{{- else }}
{{- required "temporal.address is required (host:port of your Temporal frontend), or set demo.temporal.enabled=true" .Values.temporal.address }}
{{- end }}
{{- end }}

{{/* Where the Triton that serves the embedder and intent classifier is reached (gRPC). */}}
{{- define "kefu.tritonAddress" -}}
{{- printf "%s-triton:%d" (include "kefu.fullname" .) (int .Values.triton.ports.grpc) }}
{{- end }}

{{/* Where Generation reaches its LLM on Triton: the TensorRT-LLM server on GPUs. */}}
{{- define "kefu.llmTritonAddress" -}}
{{- if include "kefu.gpu" . }}
{{- printf "%s-triton-llm:%d" (include "kefu.fullname" .) (int .Values.triton.ports.grpc) }}
{{- else }}
{{- include "kefu.tritonAddress" . }}
{{- end }}
{{- end }}

{{/* TensorRT-LLM engine and checkpoint folders on the engine volume. */}}
{{- define "kefu.enginePath" -}}
{{- $g := .Values.triton.gpu -}}
{{- printf "%s/%s" $g.engine.mountPath (default (printf "engines/%s-%s" $g.size $g.quant) $g.engine.enginePath) }}
{{- end }}

{{- define "kefu.hfModel" -}}
{{- $g := .Values.triton.gpu -}}
{{- default (printf "Qwen/Qwen3-%s" ($g.size | trimPrefix "qwen3-" | upper)) $g.engine.build.hfModel }}
{{- end }}

{{- define "kefu.checkpointPath" -}}
{{- $g := .Values.triton.gpu -}}
{{- printf "%s/%s" $g.engine.mountPath (default (printf "hf/%s" (include "kefu.hfModel" . | base)) $g.engine.checkpointPath) }}
{{- end }}

{{- define "kefu.enginesClaim" -}}
{{- default (printf "%s-engines" (include "kefu.fullname" .)) .Values.triton.gpu.engine.persistence.existingClaim }}
{{- end }}

{{/* Pod-level security context (values: podSecurityContext). */}}
{{- define "kefu.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{/* Container-level security context (values: securityContext). */}}
{{- define "kefu.securityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}

{{/* Pod template metadata shared by every component: include "kefu.podMetadata" (list $ "dialog") */}}
{{- define "kefu.podMetadata" -}}
{{- $ := index . 0 -}}
labels:
  {{- include "kefu.componentSelector" . | nindent 2 }}
  {{- with $.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  # Roll the pods when the configuration or the credentials change.
  checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") $ | sha256sum }}
  checksum/credentials: {{ include (print $.Template.BasePath "/secret.yaml") $ | sha256sum }}
  {{- with include "kefu.metricsPort" . }}
  {{- $port := . }}
  # Prometheus scrapes /metrics of this pod (metrics.prometheus); podAnnotations win.
  {{- range $key, $value := dict "prometheus.io/scrape" "true" "prometheus.io/port" $port "prometheus.io/path" "/metrics" }}
  {{- if not (hasKey $.Values.podAnnotations $key) }}
  {{ $key }}: {{ $value | quote }}
  {{- end }}
  {{- end }}
  {{- end }}
  {{- with $.Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
Prometheus /metrics of the kefu processes (services/telemetry.py): with
KEFU_TELEMETRY_PROMETHEUS_PORT=<base> every process serves /metrics (plain HTTP, on
KEFU_BIND_HOST) on base + its offset, `PROMETHEUS_OFFSETS`: Dialog +0, NLU +1,
Knowledge +2, Generation +3, the worker +4. Each pod is its own host, so the offsets only
make the port differ per Deployment. include "kefu.metricsPort" (list $ "nlu"): the
component's port, or "" when metrics.prometheus.enabled is off or the component is not a
kefu process (Triton has its own metrics port).
*/}}
{{- define "kefu.metricsPort" -}}
{{- $ := index . 0 -}}
{{- $name := index . 1 -}}
{{- $p := $.Values.metrics.prometheus -}}
{{- $offsets := dict "dialog" 0 "nlu" 1 "knowledge" 2 "generation" 3 "worker" 4 -}}
{{- if and $p.enabled (hasKey $offsets $name) }}
{{- $port := add (int $p.port) (get $offsets $name) }}
{{- if ne $name "worker" }}
{{- if eq (int $port) (int (index $.Values $name).port) }}
{{- fail (printf "metrics.prometheus.port: %s's metrics port %d is its gRPC port" $name (int $port)) }}
{{- end }}
{{- if and $.Values.security.tls.enabled (eq (int $port) (int $.Values.security.healthPort)) }}
{{- fail (printf "metrics.prometheus.port: %s's metrics port %d is security.healthPort" $name (int $port)) }}
{{- end }}
{{- end }}
{{- $port }}
{{- end }}
{{- end }}

{{/* KEFU_TELEMETRY_PROMETHEUS_PORT (the base port) of a kefu container: include "kefu.metricsEnv" (list $ "nlu") */}}
{{- define "kefu.metricsEnv" -}}
{{- $ := index . 0 -}}
{{- if include "kefu.metricsPort" . }}
- name: KEFU_TELEMETRY_PROMETHEUS_PORT
  value: {{ $.Values.metrics.prometheus.port | quote }}
{{- end }}
{{- end }}

{{/* The container port `metrics` of a kefu container: include "kefu.metricsContainerPort" (list $ "nlu") */}}
{{- define "kefu.metricsContainerPort" -}}
{{- with include "kefu.metricsPort" . }}
# /metrics for Prometheus (metrics.prometheus; services/telemetry.py PROMETHEUS_OFFSETS).
- name: metrics
  containerPort: {{ . }}
  protocol: TCP
{{- end }}
{{- end }}

{{/* Pod spec fields every kefu pod shares (service account, pull secrets, security). */}}
{{- define "kefu.podCommon" -}}
serviceAccountName: {{ include "kefu.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "kefu.podSecurityContext" . | nindent 2 }}
{{- end }}

{{/* Node placement of the CPU pods (global nodeSelector / tolerations / affinity / spread). */}}
{{- define "kefu.placement" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Environment every kefu container gets besides the ConfigMap: HOME on the writable /tmp. */}}
{{- define "kefu.baseEnv" -}}
- name: HOME
  value: /tmp
- name: XDG_CACHE_HOME
  value: /tmp/.cache
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}

{{/*
The `security` block (services/security.py; every field of services/config.py `Security`
is KEFU_SECURITY_<FIELD>), set on the container of one kefu gRPC service:
include "kefu.securityEnv" (list $ "dialog"). Nothing is set while security is off (the
default values: TLS and API keys off, no limits).

* TLS (security.tls): every server listens with tls.crt/tls.key of the TLS Secret; with
  clientAuth it requires a client certificate signed by ca.crt (mutual TLS). The same
  files make the service a client: it verifies servers with ca.crt and presents
  tls.crt/tls.key. Kubelet's gRPC probes cannot speak TLS: each server also serves
  grpc.health.v1 alone, in plaintext, on security.healthPort.
* API keys (security.apiKeys): the keys file from its Secret, mounted; Dialog, the only
  kefu service that calls the others, gets the plain service key (role service) from a
  Secret (security.serviceKey). Agent and admin calls are appended to the audit log.
* Limits: Dialog's turns per minute; the largest request a server accepts.
*/}}
{{- define "kefu.securityEnv" -}}
{{- $ := index . 0 -}}
{{- $name := index . 1 -}}
{{- $s := $.Values.security -}}
{{- if and $s.apiKeys.enabled (not $s.tls.enabled) }}
{{- fail "security.apiKeys.enabled needs security.tls.enabled: kefu sends API keys only over TLS" }}
{{- end }}
{{- if $s.tls.enabled }}
{{- $tls := $s.tls.mountPath }}
- name: KEFU_SECURITY_TLS_CERT
  value: {{ printf "%s/tls.crt" $tls | quote }}
- name: KEFU_SECURITY_TLS_KEY
  value: {{ printf "%s/tls.key" $tls | quote }}
{{- if $s.tls.clientAuth }}
- name: KEFU_SECURITY_TLS_CLIENT_CA
  value: {{ printf "%s/ca.crt" $tls | quote }}
{{- end }}
- name: KEFU_SECURITY_TLS_CA
  value: {{ printf "%s/ca.crt" $tls | quote }}
- name: KEFU_SECURITY_TLS_CLIENT_CERT
  value: {{ printf "%s/tls.crt" $tls | quote }}
- name: KEFU_SECURITY_TLS_CLIENT_KEY
  value: {{ printf "%s/tls.key" $tls | quote }}
{{- with $s.tls.serverName }}
- name: KEFU_SECURITY_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
- name: KEFU_SECURITY_HEALTH_PORT
  value: {{ $s.healthPort | quote }}
{{- end }}
{{- if $s.apiKeys.enabled }}
- name: KEFU_SECURITY_API_KEYS
  value: {{ printf "%s/api-keys" $s.apiKeys.mountPath | quote }}
- name: KEFU_SECURITY_AUDIT_LOG
  # One file per pod (<release>-<service>-<hash>.jsonl): replicas must not append to one
  # file over a network file system.
  value: {{ printf "%s/$(POD_NAME).jsonl" $s.auditLog.mountPath | quote }}
{{- if eq $name "dialog" }}
- name: KEFU_SECURITY_SERVICE_KEY
  valueFrom:
    secretKeyRef:
      name: {{ default $s.apiKeys.existingSecret $s.serviceKey.existingSecret }}
      key: {{ $s.serviceKey.key }}
{{- end }}
{{- end }}
{{- if eq $name "dialog" }}
{{- if gt (float64 $s.customerTurnsPerMin) 0.0 }}
- name: KEFU_SECURITY_CUSTOMER_TURNS_PER_MIN
  value: {{ $s.customerTurnsPerMin | toString | quote }}
{{- end }}
{{- if gt (float64 $s.sessionTurnsPerMin) 0.0 }}
- name: KEFU_SECURITY_SESSION_TURNS_PER_MIN
  value: {{ $s.sessionTurnsPerMin | toString | quote }}
{{- end }}
{{- end }}
{{- if gt (int64 $s.maxRequestBytes) 0 }}
- name: KEFU_SECURITY_MAX_REQUEST_BYTES
  value: {{ int64 $s.maxRequestBytes | toString | quote }}
{{- end }}
{{- end }}

{{/* The port the gRPC probes of a kefu service use: its plaintext health port when TLS is on. */}}
{{- define "kefu.probePort" -}}
{{- $ := index . 0 -}}
{{- $port := index . 1 -}}
{{- if $.Values.security.tls.enabled }}
{{- if eq (int $.Values.security.healthPort) (int $port) }}
{{- fail (printf "security.healthPort (%d) must differ from the services' gRPC ports" (int $.Values.security.healthPort)) }}
{{- end }}
{{- $.Values.security.healthPort }}
{{- else }}
{{- $port }}
{{- end }}
{{- end }}

{{- define "kefu.securityVolumeMounts" -}}
{{- $s := .Values.security -}}
{{- if $s.tls.enabled }}
- name: tls
  mountPath: {{ $s.tls.mountPath }}
  readOnly: true
{{- end }}
{{- if $s.apiKeys.enabled }}
- name: api-keys
  mountPath: {{ $s.apiKeys.mountPath }}
  readOnly: true
- name: audit
  mountPath: {{ $s.auditLog.mountPath }}
{{- end }}
{{- end }}

{{- define "kefu.securityVolumes" -}}
{{- $s := .Values.security -}}
{{- if $s.tls.enabled }}
- name: tls
  secret:
    secretName: {{ required "security.tls.existingSecret is required when security.tls.enabled (a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt)" $s.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- if $s.apiKeys.enabled }}
- name: api-keys
  secret:
    secretName: {{ required "security.apiKeys.existingSecret is required when security.apiKeys.enabled (a Secret holding the keys file made with `kefu keys new`)" $s.apiKeys.existingSecret }}
    defaultMode: 0440
    # Only the keys file (sha256 digests), not the plain service key the Secret may also hold.
    items:
      - key: {{ $s.apiKeys.key }}
        path: api-keys
- name: audit
{{- if $s.auditLog.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "kefu.auditClaim" . }}
{{- else }}
  emptyDir:
    sizeLimit: {{ $s.auditLog.emptyDirSizeLimit }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kefu.auditClaim" -}}
{{- default (printf "%s-audit" (include "kefu.fullname" .)) .Values.security.auditLog.persistence.existingClaim }}
{{- end }}

{{/*
gRPC health probes (grpc.health.v1, overall status: service ""): include "kefu.grpcProbes"
(list $ port), port from "kefu.probePort": the gRPC port, or the plaintext health port
when security.tls.enabled.
*/}}
{{- define "kefu.grpcProbes" -}}
{{- $ := index . 0 -}}
{{- $port := index . 1 -}}
{{- $p := $.Values.probes -}}
startupProbe:
  grpc:
    port: {{ $port }}
    service: ""
  periodSeconds: {{ $p.startup.periodSeconds }}
  timeoutSeconds: {{ $p.startup.timeoutSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
readinessProbe:
  grpc:
    port: {{ $port }}
    service: ""
  periodSeconds: {{ $p.readiness.periodSeconds }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
livenessProbe:
  grpc:
    port: {{ $port }}
    service: ""
  periodSeconds: {{ $p.liveness.periodSeconds }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
{{- end }}

{{/*
An init container that copies the image's model repository (llm, embedder,
intent_classifier/config.pbtxt, the TensorRT-LLM templates) onto the shared volume.
Intent-classifier versions are not in the image (.dockerignore): NLU publishes them on
the volume and they are left alone. Used by NLU and Triton, whichever starts first.
*/}}
{{- define "kefu.modelRepositoryInit" -}}
- name: model-repository
  image: {{ include "kefu.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["/bin/sh", "-ec"]
  args:
    - |
      mkdir -p "$KEFU_MODELS_REPOSITORY"
      cp -R /app/model_repository/. "$KEFU_MODELS_REPOSITORY/"
      echo "model repository ready in $KEFU_MODELS_REPOSITORY"
  env:
    - name: KEFU_MODELS_REPOSITORY
      value: {{ .Values.modelRepository.mountPath | quote }}
  securityContext:
    {{- include "kefu.securityContext" . | nindent 4 }}
  resources:
    {{- toYaml .Values.initResources | nindent 4 }}
  volumeMounts:
    - name: model-repository
      mountPath: {{ .Values.modelRepository.mountPath }}
    - name: tmp
      mountPath: /tmp
{{- end }}

{{/*
An init container that seeds the demo ERP (store.db) and builds the demo store behind
the ERP port (erp.db) in KEFU_HOME, as `kefu up` does; both steps are idempotent and
take a file lock, and an imported store (`kefu store import`) is kept. With
postgres.enabled the store is built in PostgreSQL (once, under its lock) instead.
*/}}
{{- define "kefu.seedInit" -}}
- name: seed-store
  image: {{ include "kefu.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command:
    - /app/.venv/bin/python
    - -c
    - |
      from services.config import load_config
      from services.demo.store import DemoStore
      from services.erp import ensure_demo_store
      cfg = load_config()
      cfg.home_path.mkdir(parents=True, exist_ok=True)
      DemoStore.seed(cfg.store_path)
      print("store: demo store built" if ensure_demo_store(cfg) else "store: existing store kept", flush=True)
  envFrom:
    - configMapRef:
        name: {{ include "kefu.configName" . }}
  env:
    {{- include "kefu.baseEnv" . | nindent 4 }}
    {{- if .Values.postgres.enabled }}
    - name: KEFU_STATE_POSTGRES_DSN
      valueFrom:
        secretKeyRef:
          name: {{ include "kefu.credentialsSecret" . }}
          key: postgres-dsn
    {{- end }}
  securityContext:
    {{- include "kefu.securityContext" . | nindent 4 }}
  resources:
    {{- toYaml .Values.initResources | nindent 4 }}
  volumeMounts:
    - name: home
      mountPath: {{ .Values.home }}
    - name: tmp
      mountPath: /tmp
{{- end }}

{{/* The state volume (KEFU_HOME of dialog, worker and the embedded knowledge index). */}}
{{- define "kefu.stateVolume" -}}
- name: home
{{- if .Values.state.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-state" (include "kefu.fullname" .)) .Values.state.persistence.existingClaim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .Values.state.emptyDirSizeLimit }}
{{- end }}
{{- end }}

{{- define "kefu.modelRepositoryClaim" -}}
{{- default (printf "%s-model-repository" (include "kefu.fullname" .)) .Values.modelRepository.persistence.existingClaim }}
{{- end }}

{{- define "kefu.modelCacheClaim" -}}
{{- default (printf "%s-model-cache" (include "kefu.fullname" .)) .Values.modelCache.persistence.existingClaim }}
{{- end }}

{{/* A PodDisruptionBudget: include "kefu.pdb" (list $ "dialog" .Values.dialog.pdb) */}}
{{- define "kefu.pdb" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
{{- $pdb := index . 2 -}}
{{- if $pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "kefu.fullname" $ }}-{{ $component }}
  labels:
    {{- include "kefu.componentLabels" (list $ $component) | nindent 4 }}
spec:
  {{- if hasKey $pdb "minAvailable" }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $pdb.maxUnavailable | default 1 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "kefu.componentSelector" (list $ $component) | nindent 6 }}
{{- end }}
{{- end }}

{{/* Exec probe command: the Temporal frontend (KEFU_TEMPORAL_ADDRESS) accepts a TCP connection. */}}
{{- define "kefu.temporalCheck" -}}
- /app/.venv/bin/python
- -S
- -c
- "import os, socket; h, p = os.environ['KEFU_TEMPORAL_ADDRESS'].rsplit(':', 1); socket.create_connection((h, int(p)), 3).close()"
{{- end }}

{{/* A PersistentVolumeClaim: include "kefu.pvc" (list $ "state" .Values.state.persistence) */}}
{{- define "kefu.pvc" -}}
{{- $ := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- $p := index . 2 -}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "kefu.fullname" $ }}-{{ $suffix }}
  labels:
    {{- include "kefu.componentLabels" (list $ $suffix) | nindent 4 }}
  {{- if $p.keep }}
  annotations:
    helm.sh/resource-policy: keep
  {{- end }}
spec:
  accessModes:
    {{- toYaml $p.accessModes | nindent 4 }}
  {{- with $p.storageClass }}
  storageClassName: {{ . | quote }}
  {{- end }}
  resources:
    requests:
      storage: {{ $p.size }}
{{- end }}

{{/*
A shell line that stops with a clear message when triton.gpu.gpus is not the tensor
parallelism kefu's profiles build (size, quant) for (model_repository/trtllm/profiles.yaml).
*/}}
{{- define "kefu.checkTensorParallelism" -}}
{{- $g := .Values.triton.gpu -}}
/app/.venv/bin/python -c "import sys; from services.serving.trtllm import resolve; tp = resolve('{{ $g.size }}', '{{ $g.quant }}').serving['tp_size']; sys.exit(0 if tp == {{ $g.gpus }} else 'triton.gpu.gpus is {{ $g.gpus }} but {{ $g.size }} {{ $g.quant }} is built for tensor parallelism %d' % tp)"
{{- end }}

{{/*
NLU needs Triton when it starts (it publishes the intent classifier and has Triton load
it): wait for Triton's readiness instead of crash-looping while Triton fetches its model
files on a first install.
*/}}
{{- define "kefu.waitForTritonInit" -}}
- name: wait-for-triton
  image: {{ include "kefu.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command:
    - /app/.venv/bin/python
    - -S
    - -c
    - |
      import time, urllib.request
      url = "http://{{ include "kefu.fullname" . }}-triton:{{ .Values.triton.ports.http }}/v2/health/ready"
      while True:
          try:
              with urllib.request.urlopen(url, timeout=5) as resp:
                  if resp.status == 200:
                      print(f"Triton is ready at {url}", flush=True)
                      break
          except OSError as exc:
              print(f"waiting for Triton at {url}: {exc}", flush=True)
          time.sleep(5)
  securityContext:
    {{- include "kefu.securityContext" . | nindent 4 }}
  resources:
    {{- toYaml .Values.initResources | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end }}

{{/*
The intent-sync sidecar of each Triton pod: NLU publishes intent-classifier versions on
the shared model repository and asks *one* Triton (through the Service) to load them;
with several Triton replicas the others would keep the old version. Every
intervalSeconds this loop compares the newest published version with the one its own
Triton serves and calls the local model-control API (explicit mode) when they differ.
Stdlib only; touches /tmp/intent-sync.alive for its probes.
*/}}
{{- define "kefu.intentSyncScript" -}}
import json, os, time, urllib.error, urllib.request
repo = os.environ["KEFU_MODELS_REPOSITORY"]
model = "intent_classifier"
base = "http://127.0.0.1:{{ .Values.triton.ports.http }}/v2"
interval = {{ .Values.triton.intentSync.intervalSeconds }}
def published():
    folder = os.path.join(repo, model)
    if not os.path.isfile(os.path.join(folder, "config.pbtxt")):
        return 0
    return max((int(n) for n in os.listdir(folder) if n.isdigit()), default=0)
def serving():
    try:
        with urllib.request.urlopen(f"{base}/models/{model}", timeout=10) as resp:
            return max((int(v) for v in json.load(resp).get("versions", []) if str(v).isdigit()), default=0)
    except (OSError, ValueError):
        return 0
while True:
    try:
        want = published()
        if want and serving() != want:
            req = urllib.request.Request(f"{base}/repository/models/{model}/load", data=b"{}", method="POST")
            with urllib.request.urlopen(req, timeout=120):
                pass
            print(f"{model}: asked Triton to load version {want}; serving {serving()}", flush=True)
    except (OSError, ValueError) as exc:
        print(f"{model}: {exc}", flush=True)
    with open("/tmp/intent-sync.alive", "w") as fh:
        fh.write(str(time.time()))
    time.sleep(interval)
{{- end }}
