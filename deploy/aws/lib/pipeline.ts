/** @module deploy/aws/pipeline — CodePipeline: source, CodeBuild, CodeDeploy to the Auto Scaling group. */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as codebuild from 'aws-cdk-lib/aws-codebuild';
import * as codedeploy from 'aws-cdk-lib/aws-codedeploy';
import * as codepipeline from 'aws-cdk-lib/aws-codepipeline';
import * as actions from 'aws-cdk-lib/aws-codepipeline-actions';
import type * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { tallyBuildSpec } from './buildspec.js';

/**
 * Where the pipeline takes the source from.
 *
 * - `s3` (default): a versioned bucket the stack creates; upload `git archive` output to
 *   `objectKey` and the pipeline starts. Needs nothing outside the account.
 * - `github`: a CodeStar connection (created and authorised once in the console).
 */
export type TallySource =
  | {
      readonly kind: 's3';
      /**
       * Object key of the zipped source.
       * @default 'tally/source.zip'
       */
      readonly objectKey?: string;
    }
  | {
      readonly kind: 'github';
      /** ARN of an AVAILABLE CodeStar connection to GitHub. */
      readonly connectionArn: string;
      /** Repository owner (user or organisation). */
      readonly owner: string;
      /** Repository name. */
      readonly repo: string;
      /**
       * Branch to deploy.
       * @default 'main'
       */
      readonly branch?: string;
    };

/** Options for {@link TallyPipeline}. */
export interface TallyPipelineProps {
  /**
   * Source of the pipeline.
   * @default { kind: 's3' }
   */
  readonly source?: TallySource;
  /** The group to deploy to. */
  readonly autoScalingGroup: autoscaling.AutoScalingGroup;
  /** Role of the instances; gets read access to the revisions. */
  readonly instanceRole: iam.IRole;
  /** Target group CodeDeploy takes each instance out of while it is being deployed. */
  readonly targetGroup: elbv2.ApplicationTargetGroup;
  /** Alarms that stop a deployment and roll it back when they fire. */
  readonly rollbackAlarms: cloudwatch.IAlarm[];
  /**
   * How many instances may be out of service at once.
   * @default codedeploy.ServerDeploymentConfig.ONE_AT_A_TIME
   */
  readonly deploymentConfig?: codedeploy.IServerDeploymentConfig;
}

/** The delivery pipeline. */
export class TallyPipeline extends Construct {
  /** The pipeline. */
  readonly pipeline: codepipeline.Pipeline;
  /** The deployment group (in-place, with traffic control through the target group). */
  readonly deploymentGroup: codedeploy.ServerDeploymentGroup;
  /** Bucket of the `s3` source; undefined for `github`. */
  readonly sourceBucket?: s3.Bucket;
  /** Key of the source object in {@link sourceBucket}. */
  readonly sourceObjectKey?: string;

  constructor(scope: Construct, id: string, props: TallyPipelineProps) {
    super(scope, id);
    const source = props.source ?? { kind: 's3' };

    const artifactBucket = new s3.Bucket(this, 'Artifacts', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      lifecycleRules: [{ expiration: Duration.days(90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    // The CodeDeploy agent downloads the revision with the instance's own role.
    artifactBucket.grantRead(props.instanceRole);

    this.pipeline = new codepipeline.Pipeline(this, 'Pipeline', {
      pipelineType: codepipeline.PipelineType.V2,
      artifactBucket,
      restartExecutionOnUpdate: false,
    });

    const sourceOutput = new codepipeline.Artifact('Source');
    let sourceAction: codepipeline.IAction;
    if (source.kind === 'github') {
      sourceAction = new actions.CodeStarConnectionsSourceAction({
        actionName: 'GitHub',
        connectionArn: source.connectionArn,
        owner: source.owner,
        repo: source.repo,
        branch: source.branch ?? 'main',
        output: sourceOutput,
        triggerOnPush: true,
      });
    } else {
      const objectKey = source.objectKey ?? 'tally/source.zip';
      const bucket = new s3.Bucket(this, 'Source', {
        versioned: true,
        encryption: s3.BucketEncryption.S3_MANAGED,
        blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
        enforceSSL: true,
        eventBridgeEnabled: true,
        lifecycleRules: [{ noncurrentVersionExpiration: Duration.days(30) }],
        removalPolicy: RemovalPolicy.RETAIN,
      });
      this.sourceBucket = bucket;
      this.sourceObjectKey = objectKey;
      sourceAction = new actions.S3SourceAction({
        actionName: 'S3',
        bucket,
        bucketKey: objectKey,
        output: sourceOutput,
        // Started by the EventBridge rule below: no polling and no CloudTrail trail needed.
        trigger: actions.S3Trigger.NONE,
      });
      new events.Rule(this, 'SourceUploaded', {
        description: 'Start the Tally pipeline when a new source archive is uploaded',
        eventPattern: {
          source: ['aws.s3'],
          detailType: ['Object Created'],
          detail: { bucket: { name: [bucket.bucketName] }, object: { key: [objectKey] } },
        },
        targets: [new targets.CodePipeline(this.pipeline)],
      });
    }
    this.pipeline.addStage({ stageName: 'Source', actions: [sourceAction] });

    const project = new codebuild.PipelineProject(this, 'Build', {
      description: 'Lint, typecheck and build Tally; assemble the CodeDeploy revision',
      buildSpec: codebuild.BuildSpec.fromObject(tallyBuildSpec()),
      environment: {
        buildImage: codebuild.LinuxBuildImage.AMAZON_LINUX_2023_5,
        computeType: codebuild.ComputeType.MEDIUM,
      },
      timeout: Duration.minutes(30),
      logging: {
        cloudWatch: {
          logGroup: new logs.LogGroup(this, 'BuildLogs', {
            retention: logs.RetentionDays.ONE_MONTH,
          }),
        },
      },
    });
    const buildOutput = new codepipeline.Artifact('Revision');
    this.pipeline.addStage({
      stageName: 'Build',
      actions: [
        new actions.CodeBuildAction({
          actionName: 'Build',
          project,
          input: sourceOutput,
          outputs: [buildOutput],
        }),
      ],
    });

    this.deploymentGroup = new codedeploy.ServerDeploymentGroup(this, 'DeploymentGroup', {
      application: new codedeploy.ServerApplication(this, 'Application'),
      autoScalingGroups: [props.autoScalingGroup],
      // The instance bootstrap installs the agent itself, after the env file and log shipping.
      installAgent: false,
      loadBalancers: [codedeploy.LoadBalancer.application(props.targetGroup)],
      deploymentConfig: props.deploymentConfig ?? codedeploy.ServerDeploymentConfig.ONE_AT_A_TIME,
      alarms: props.rollbackAlarms,
      autoRollback: { failedDeployment: true, stoppedDeployment: true, deploymentInAlarm: true },
      // On scale-in, take the instance out of the target group before it is terminated.
      terminationHook: true,
    });
    this.pipeline.addStage({
      stageName: 'Deploy',
      actions: [
        new actions.CodeDeployServerDeployAction({
          actionName: 'Deploy',
          input: buildOutput,
          deploymentGroup: this.deploymentGroup,
        }),
      ],
    });
  }
}
