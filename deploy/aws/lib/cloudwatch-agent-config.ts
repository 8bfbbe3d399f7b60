/** @module deploy/aws/cloudwatch-agent-config — the CloudWatch agent JSON for a Tally instance. */

/** Inputs of {@link cloudWatchAgentConfig}. */
export interface CloudWatchAgentConfigOptions {
  /** Log group that receives `app.log`. */
  readonly appLogGroupName: string;
  /** Log group that receives `error.log`. */
  readonly errorLogGroupName: string;
  /**
   * Directory Tally writes its logs to (TALLY_LOG_DIR in tally.env).
   * @default '/var/log/tally'
   */
  readonly logDir?: string;
  /**
   * CloudWatch namespace of the host metrics.
   * @default 'Tally/Host'
   */
  readonly metricsNamespace?: string;
  /**
   * How often the agent samples memory and disk, seconds.
   * @default 60
   */
  readonly metricsIntervalSeconds?: number;
}

/** The agent configuration as a plain object; the stack stores it as JSON in SSM. */
export type CloudWatchAgentConfig = Record<string, unknown>;

/**
 * Ships app.log and error.log and publishes memory and disk use. A single Tally process writes
 * `<logDir>/app.log` (stream `<instance id>`); with TALLY_WORKERS > 1 each worker writes
 * `<logDir>/w<N>/app.log` (stream `<instance id>_<path>`, one per worker). Tally rotates by
 * renaming the live file to `.1` and reopening the same name, so the agent follows fixed names
 * and never ships a rotated copy twice.
 */
export function cloudWatchAgentConfig(
  options: CloudWatchAgentConfigOptions,
): CloudWatchAgentConfig {
  const logDir = options.logDir ?? '/var/log/tally';
  const file = (name: string, group: string, perWorker: boolean) => ({
    file_path: perWorker ? `${logDir}/w*/${name}` : `${logDir}/${name}`,
    log_group_name: group,
    log_stream_name: '{instance_id}',
    // With a glob the agent would otherwise tail only the most recently written worker's file.
    ...(perWorker ? { publish_multi_logs: true } : {}),
    // Log files appear after the agent starts (first start, first worker); read them whole.
    from_beginning: true,
    // pino writes `"time":"2026-01-31T12:00:00.000Z"`; the agent takes the event time from it.
    timestamp_format: '%Y-%m-%dT%H:%M:%S.%fZ',
    timezone: 'UTC',
  });
  // The agent substitutes these placeholders on the instance; they are not template literals.
  const asgName = '$' + '{aws:AutoScalingGroupName}';
  const instanceId = '$' + '{aws:InstanceId}';
  return {
    agent: {
      metrics_collection_interval: options.metricsIntervalSeconds ?? 60,
      run_as_user: 'root',
    },
    logs: {
      force_flush_interval: 5,
      logs_collected: {
        files: {
          collect_list: [
            file('app.log', options.appLogGroupName, false),
            file('error.log', options.errorLogGroupName, false),
            file('app.log', options.appLogGroupName, true),
            file('error.log', options.errorLogGroupName, true),
          ],
        },
      },
    },
    metrics: {
      namespace: options.metricsNamespace ?? 'Tally/Host',
      append_dimensions: { AutoScalingGroupName: asgName, InstanceId: instanceId },
      // Also publish one series per group, so a dashboard does not depend on instance ids.
      aggregation_dimensions: [['AutoScalingGroupName']],
      metrics_collected: {
        mem: { measurement: ['mem_used_percent', 'mem_available'] },
        disk: {
          measurement: ['used_percent', 'inodes_free'],
          resources: ['/'],
          ignore_file_system_types: ['sysfs', 'tmpfs', 'devtmpfs', 'overlay'],
        },
        swap: { measurement: ['swap_used_percent'] },
      },
    },
  };
}
