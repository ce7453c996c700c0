{{- define "chatmq.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "chatmq.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* selector labels of one part: (dict "root" $ "part" "router") */}}
{{- define "chatmq.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .part }}
{{- end -}}

{{- define "chatmq.image" -}}
{{- $i := .Values.image -}}
{{- if $i.digest -}}{{ printf "%s@%s" $i.repository $i.digest }}{{- else -}}
{{- if or (not $i.tag) (eq (toString $i.tag) "latest") -}}{{ fail "image.tag must pin a version (not empty, not latest), or set image.digest" }}{{- end -}}
{{ printf "%s:%s" $i.repository (toString $i.tag) }}{{- end -}}
{{- end -}}

{{- define "chatmq.secretName" -}}
{{- default (printf "%s-secrets" (include "chatmq.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The parts that run as Deployments, in order: name, values key, command, whether enabled, whether a bus consumer */}}
{{- define "chatmq.deployments" -}}
- {name: router, key: router, command: router, enabled: true, consumer: true}
- {name: group-router, key: groupRouter, command: group-router, enabled: true, consumer: true}
- {name: storage, key: storage, command: storage, enabled: true, consumer: true}
- {name: api, key: api, command: api, enabled: true, consumer: false}
- {name: push, key: pushPart, command: push, enabled: {{ ne .Values.push.provider "none" }}, consumer: true}
- {name: telemetry, key: telemetryPart, command: telemetry, enabled: {{ ne .Values.telemetry.influxUrl "" }}, consumer: true}
{{- end -}}

{{/*
The pod spec of one part: (dict "root" $ "part" "router" "command" "router" "v" .Values.router "http" false)
http: the part serves the REST API (probes and metrics on its http port, not the ops port).
*/}}
{{- define "chatmq.podTemplate" -}}
{{- $root := .root -}}
{{- $v := .v -}}
{{- $probePort := ternary "http" "ops" .http -}}
metadata:
  labels:
    {{- include "chatmq.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .part }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- if not $root.Values.secrets.existingSecret }}
    checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    {{- end }}
    {{- if $root.Values.metrics.scrape }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ ternary $root.Values.ports.http $root.Values.ports.ops .http | quote }}
    prometheus.io/path: /metrics
    {{- end }}
spec:
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets: {{- toYaml . | nindent 4 }}
  {{- end }}
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  securityContext: {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- with $v.nodeSelector }}
  nodeSelector: {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations: {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity: {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .part }}
      image: {{ include "chatmq.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args: [{{ .command | quote }}]
      securityContext: {{- toYaml $root.Values.securityContext | nindent 8 }}
      envFrom:
        - configMapRef: {name: {{ include "chatmq.fullname" $root }}-env}
        - secretRef: {name: {{ include "chatmq.secretName" $root }}}
      env:
        - {name: CHATMQ_CONFIG, value: /etc/chatmq/cluster.toml}
        - name: CHATMQ_INSTANCE
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        {{- if eq .part "broker" }}
        - name: CHATMQ_NODE
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        {{- end }}
        {{- if and $root.Values.tls.enabled (or .http (eq .part "broker")) }}
        - {name: CHATMQ_TLS_CERT, value: /etc/chatmq/tls/tls.crt}
        - {name: CHATMQ_TLS_KEY, value: /etc/chatmq/tls/tls.key}
        {{- end }}
      ports:
        {{- if eq .part "broker" }}
        - {name: mqtt, containerPort: {{ $root.Values.ports.mqtt }}}
        - {name: ws, containerPort: {{ $root.Values.ports.ws }}}
        {{- if $root.Values.tls.enabled }}
        - {name: mqtts, containerPort: {{ $root.Values.ports.mqtts }}}
        - {name: wss, containerPort: {{ $root.Values.ports.wss }}}
        {{- end }}
        {{- end }}
        {{- if .http }}
        - {name: http, containerPort: {{ $root.Values.ports.http }}}
        {{- if $root.Values.tls.enabled }}
        - {name: https, containerPort: {{ $root.Values.ports.https }}}
        {{- end }}
        {{- else }}
        - {name: ops, containerPort: {{ $root.Values.ports.ops }}}
        {{- end }}
      startupProbe:
        httpGet: {path: /healthz, port: {{ $probePort }}}
        {{- toYaml $root.Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet: {path: /healthz, port: {{ $probePort }}}
        {{- toYaml $root.Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet: {path: /readyz, port: {{ $probePort }}}
        {{- toYaml $root.Values.probes.readiness | nindent 8 }}
      resources: {{- toYaml $v.resources | nindent 8 }}
      volumeMounts:
        - {name: config, mountPath: /etc/chatmq/cluster.toml, subPath: cluster.toml, readOnly: true}
        - {name: data, mountPath: /var/lib/chatmq}
        - {name: tmp, mountPath: /tmp}
        {{- if and $root.Values.tls.enabled (or .http (eq .part "broker")) }}
        - {name: tls, mountPath: /etc/chatmq/tls, readOnly: true}
        {{- end }}
        {{- if and (eq .part "push") (eq $root.Values.push.provider "fcm") }}
        - {name: fcm, mountPath: /etc/chatmq/fcm, readOnly: true}
        {{- end }}
  volumes:
    - name: config
      configMap: {name: {{ include "chatmq.fullname" $root }}-config}
    - {name: data, emptyDir: {}}
    - {name: tmp, emptyDir: {medium: Memory, sizeLimit: 64Mi}}
    {{- if and $root.Values.tls.enabled (or .http (eq .part "broker")) }}
    - name: tls
      secret: {secretName: {{ required "tls.secretName is needed with tls.enabled" $root.Values.tls.secretName }}}
    {{- end }}
    {{- if and (eq .part "push") (eq $root.Values.push.provider "fcm") }}
    - name: fcm
      secret: {secretName: {{ required "push.fcmSecretName is needed with push.provider fcm" $root.Values.push.fcmSecretName }}}
    {{- end }}
{{- end -}}
