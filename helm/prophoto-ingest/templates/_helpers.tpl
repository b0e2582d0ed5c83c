{{/* Names and labels. */}}
{{- define "prophoto-ingest.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "prophoto-ingest.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "prophoto-ingest.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "prophoto-ingest.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels for one component: call with (dict "root" $ "component" "worker-ingest"). */}}
{{- define "prophoto-ingest.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prophoto-ingest.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "prophoto-ingest.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "prophoto-ingest.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "prophoto-ingest.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "prophoto-ingest.saslSecretName" -}}
{{- default (include "prophoto-ingest.fullname" .) .Values.kafka.sasl.existingSecret }}
{{- end }}
{{- define "prophoto-ingest.saslSecretKey" -}}
{{- if .Values.kafka.sasl.existingSecret }}{{ .Values.kafka.sasl.existingSecretKey }}{{ else }}INGEST_KAFKA__SASL_PASSWORD{{ end }}
{{- end }}
{{- define "prophoto-ingest.clickhouseSecretName" -}}
{{- default (include "prophoto-ingest.fullname" .) .Values.clickhouse.existingSecret }}
{{- end }}
{{- define "prophoto-ingest.clickhouseSecretKey" -}}
{{- if .Values.clickhouse.existingSecret }}{{ .Values.clickhouse.existingSecretKey }}{{ else }}INGEST_CLICKHOUSE__PASSWORD{{ end }}
{{- end }}

{{- define "prophoto-ingest.statusTokenSecretName" -}}
{{- default (include "prophoto-ingest.fullname" .) .Values.status.token.existingSecret }}
{{- end }}
{{- define "prophoto-ingest.statusTokenSecretKey" -}}
{{- if .Values.status.token.existingSecret }}{{ .Values.status.token.existingSecretKey }}{{ else }}INGEST_STATUS__TOKEN{{ end }}
{{- end }}
{{/* "true" when the status service has a bearer token, else empty. */}}
{{- define "prophoto-ingest.statusToken" -}}
{{- if or .Values.status.token.value .Values.status.token.existingSecret }}true{{ end }}
{{- end }}

{{- define "prophoto-ingest.tlsMountPath" -}}/etc/prophoto-ingest/kafka-tls{{- end }}

{{/* Refuse combinations the settings class would accept but Kafka would not. */}}
{{- define "prophoto-ingest.validate" -}}
{{- $k := .Values.kafka }}
{{- $sasl := hasPrefix "SASL_" $k.securityProtocol }}
{{- if and $sasl (not $k.sasl.mechanism) }}
{{- fail (printf "kafka.securityProtocol is %s: set kafka.sasl.mechanism" $k.securityProtocol) }}
{{- end }}
{{- if and $k.sasl.mechanism (not $sasl) }}
{{- fail (printf "kafka.sasl.mechanism is set but kafka.securityProtocol is %s: use SASL_PLAINTEXT or SASL_SSL" $k.securityProtocol) }}
{{- end }}
{{- if and $k.tls.enabled (not (has $k.securityProtocol (list "SSL" "SASL_SSL"))) }}
{{- fail (printf "kafka.tls.enabled needs kafka.securityProtocol SSL or SASL_SSL, not %s" $k.securityProtocol) }}
{{- end }}
{{- if and $k.tls.enabled (not $k.tls.secretName) }}
{{- fail "kafka.tls.enabled: set kafka.tls.secretName to the Secret holding the CA" }}
{{- end }}
{{- if and (not .Values.status.metricsPublic) (not (include "prophoto-ingest.statusToken" .)) }}
{{- fail "status.metricsPublic=false needs a token (status.token.value or status.token.existingSecret): without one the status service checks nothing" }}
{{- end }}
{{- $seen := dict }}
{{- range .Values.workers }}
{{- if hasKey $seen .name }}
{{- fail (printf "workers: group name %q appears twice" .name) }}
{{- end }}
{{- $_ := set $seen .name true }}
{{- end }}
{{- end }}

{{/* One worker group with workerDefaults filled in: (dict "root" $ "group" $w) -> YAML.
Maps one level down (resources, autoscaling) merge key by key; explicit zeros and empty
strings in a group win over the defaults. */}}
{{- define "prophoto-ingest.workerGroup" -}}
{{- $out := deepCopy .root.Values.workerDefaults }}
{{- range $k, $v := .group }}
{{- if and (kindIs "map" $v) (kindIs "map" (get $out $k)) }}
{{- $inner := deepCopy (get $out $k) }}
{{- range $k2, $v2 := $v }}
{{- $_ := set $inner $k2 $v2 }}
{{- end }}
{{- $_ := set $out $k $inner }}
{{- else }}
{{- $_ := set $out $k $v }}
{{- end }}
{{- end }}
{{- $partitions := int .root.Values.kafka.partitions }}
{{- $a := $out.autoscaling }}
{{- if and $a.mode (gt (int $a.maxReplicas) $partitions) }}
{{- fail (printf "workers[%s].autoscaling.maxReplicas=%d exceeds kafka.partitions=%d: replicas beyond the partition count get no partitions and sit idle" $out.name (int $a.maxReplicas) $partitions) }}
{{- end }}
{{- if and $a.mode (gt (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- fail (printf "workers[%s].autoscaling.minReplicas > maxReplicas" $out.name) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* Settings that differ per pod, plus the secrets; the rest comes from the ConfigMap. */}}
{{- define "prophoto-ingest.secretEnv" -}}
{{- if or .Values.kafka.sasl.password .Values.kafka.sasl.existingSecret }}
- name: INGEST_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "prophoto-ingest.saslSecretName" . }}
      key: {{ include "prophoto-ingest.saslSecretKey" . }}
{{- end }}
{{- if or .Values.clickhouse.password .Values.clickhouse.existingSecret }}
- name: INGEST_CLICKHOUSE__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "prophoto-ingest.clickhouseSecretName" . }}
      key: {{ include "prophoto-ingest.clickhouseSecretKey" . }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The status container's env: its bearer token (only this container gets it), then the rest. */}}
{{- define "prophoto-ingest.statusEnv" -}}
{{- if include "prophoto-ingest.statusToken" . }}
- name: INGEST_STATUS__TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "prophoto-ingest.statusTokenSecretName" . }}
      key: {{ include "prophoto-ingest.statusTokenSecretKey" . }}
{{- end }}
{{- with (include "prophoto-ingest.secretEnv" . | trim) }}
{{ . }}
{{- end }}
{{- end }}

{{- define "prophoto-ingest.podEnvFrom" -}}
- configMapRef:
    name: {{ include "prophoto-ingest.fullname" . }}
{{- end }}

{{- define "prophoto-ingest.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod-level fields shared by every Deployment. */}}
{{- define "prophoto-ingest.podCommon" -}}
serviceAccountName: {{ include "prophoto-ingest.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
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
{{- end }}

{{- define "prophoto-ingest.containerCommon" -}}
image: {{ include "prophoto-ingest.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
envFrom:
  {{- include "prophoto-ingest.podEnvFrom" . | nindent 2 }}
{{- end }}

{{/* Volumes: writable /tmp and working directory always; shared storage and Kafka TLS when asked for. */}}
{{- define "prophoto-ingest.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.tmpSizeLimit }}
- name: work
  emptyDir:
    sizeLimit: {{ .root.Values.tmpSizeLimit }}
{{- if .storage }}
- name: storage
{{- if .root.Values.storage.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .root.Values.storage.existingClaim }}
{{- else if .root.Values.storage.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "prophoto-ingest.fullname" .root }}-storage
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}
{{- if .root.Values.kafka.tls.enabled }}
- name: kafka-tls
  secret:
    secretName: {{ .root.Values.kafka.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "prophoto-ingest.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
# The image's working directory: faust keeps "<group>-data" there (read-only root otherwise).
- name: work
  mountPath: {{ .root.Values.workingDir }}
{{- if .storage }}
- name: storage
  mountPath: {{ .root.Values.storage.mountPath }}
{{- end }}
{{- if .root.Values.kafka.tls.enabled }}
- name: kafka-tls
  mountPath: {{ include "prophoto-ingest.tlsMountPath" .root }}
  readOnly: true
{{- end }}
{{- end }}
