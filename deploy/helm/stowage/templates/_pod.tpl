{{/* The pod template shared by the StatefulSet (single) and the Deployment (scale-out). */}}
{{- define "stowage.pod" -}}
metadata:
  labels:
    {{- include "stowage.selector" . | nindent 4 }}
  annotations:
    checksum/config: {{ include "stowage.config" . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: 45
  containers:
    - name: stowage
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      env:
        # The server and `stowage healthcheck` (kubectl exec) read the same file.
        - name: STOWAGE_CONFIG
          value: /etc/stowage/stowage.yaml
        {{- if .Values.auth.enabled }}
        - name: STOWAGE_ADMIN_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ include "stowage.secretName" (list . .Values.auth.existingSecret) }}
              key: {{ ternary .Values.auth.existingSecretKey "admin-password" (ne .Values.auth.existingSecret "") }}
        {{- end }}
        {{- if or .Values.encryption.key .Values.encryption.existingSecret }}
        - name: STOWAGE_KEY
          valueFrom:
            secretKeyRef:
              name: {{ include "stowage.secretName" (list . .Values.encryption.existingSecret) }}
              key: {{ ternary .Values.encryption.existingSecretKey "encryption-key" (ne .Values.encryption.existingSecret "") }}
        {{- end }}
        {{- if eq .Values.mode "scale-out" }}
        - name: STOWAGE_PG
          valueFrom:
            secretKeyRef:
              name: {{ include "stowage.secretName" (list . .Values.postgres.existingSecret) }}
              key: {{ ternary .Values.postgres.existingSecretKey "postgres-url" (ne .Values.postgres.existingSecret "") }}
        {{- if or .Values.s3.existingSecret .Values.s3.accessKeyId }}
        - name: AWS_ACCESS_KEY_ID
          valueFrom:
            secretKeyRef:
              name: {{ include "stowage.secretName" (list . .Values.s3.existingSecret) }}
              key: access-key-id
        - name: AWS_SECRET_ACCESS_KEY
          valueFrom:
            secretKeyRef:
              name: {{ include "stowage.secretName" (list . .Values.s3.existingSecret) }}
              key: secret-access-key
        {{- end }}
        {{- end }}
        {{- with .Values.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.service.port }}
          protocol: TCP
      startupProbe:
        httpGet: {path: /healthz, port: http, scheme: {{ include "stowage.scheme" . }}}
        periodSeconds: 2
        failureThreshold: 60
      livenessProbe:
        httpGet: {path: /healthz, port: http, scheme: {{ include "stowage.scheme" . }}}
        periodSeconds: 20
        timeoutSeconds: 5
      readinessProbe:
        httpGet: {path: /readyz, port: http, scheme: {{ include "stowage.scheme" . }}}
        periodSeconds: 5
        timeoutSeconds: 5
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/stowage
          readOnly: true
        - name: data
          mountPath: /var/lib/stowage
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "stowage.fullname" . }}
    {{- if eq .Values.mode "scale-out" }}
    # Per pod: only its LOCK and node-id (metadata, blobs and key are shared).
    - name: data
      emptyDir: {}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
