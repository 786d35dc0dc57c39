{{- define "sluice.name" -}}
{{- default "operator" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-operator, or <release>-<nameOverride>, or fullnameOverride. Labels and
selectors keep their values, so an override never changes a Deployment's selector. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "sluice.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The operator image; the relay image of the same release. */}}
{{- define "sluice.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (.Values.operator.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "sluice.relayImage" -}}
{{- printf "%s:%s" .Values.relay.image.repository (.Values.relay.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "sluice.labels" -}}
app.kubernetes.io/name: sluice-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: sluice-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The rules the operator needs, and nothing more. */}}
{{- define "sluice.rules" -}}
- apiGroups: ["sluice.dev"]
  resources: ["relaypolicies", "smtpusers", "sendingdomains"]
  verbs: ["get", "list", "watch"]
# the queued-mail finalizer: a deleted policy waits for its relays' queues
- apiGroups: ["sluice.dev"]
  resources: ["relaypolicies"]
  verbs: ["patch"]
- apiGroups: ["sluice.dev"]
  resources: ["relaypolicies/status", "smtpusers/status", "sendingdomains/status"]
  verbs: ["get", "patch", "update"]
# owner references with blockOwnerDeletion (OwnerReferencesPermissionEnforcement, on in OpenShift)
- apiGroups: ["sluice.dev"]
  resources: ["relaypolicies/finalizers", "sendingdomains/finalizers"]
  verbs: ["update"]
# a larger spec.spool.size expands the spool volumes
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "patch"]
- apiGroups: [""]
  resources: ["configmaps", "services", "secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch", "update", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* The namespaces whose pods may scrape metrics: the selector if given, else the one namespace. */}}
{{- define "sluice.monitoringNamespaceSelector" -}}
{{- if .Values.networkPolicy.monitoringNamespaceSelector -}}
{{- toYaml .Values.networkPolicy.monitoringNamespaceSelector -}}
{{- else -}}
matchLabels:
  kubernetes.io/metadata.name: {{ .Values.networkPolicy.monitoringNamespace }}
{{- end -}}
{{- end -}}
