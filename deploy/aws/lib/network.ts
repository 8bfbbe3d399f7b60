/** @module deploy/aws/network — the VPC: public subnets for the ALB, isolated ones for EC2 and Redis. */
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Construct } from 'constructs';

/** Options for {@link TallyNetwork}. */
export interface TallyNetworkProps {
  /**
   * Availability Zones to spread over. Two is what Multi-AZ Redis and a rolling deploy need.
   * @default 2
   */
  readonly maxAzs?: number;
  /**
   * IPv4 range of the VPC.
   * @default '10.40.0.0/16'
   */
  readonly cidr?: string;
}

/**
 * A VPC without NAT gateways. The instances never talk to the internet: packages come from the
 * Amazon Linux repositories in S3 and every AWS API they call (CodeDeploy, CloudWatch, Secrets
 * Manager, SSM) is reached through a VPC endpoint, so no route leaves the VPC.
 */
export class TallyNetwork extends Construct {
  /** The VPC. */
  readonly vpc: ec2.Vpc;
  /** Subnets of the EC2 instances (isolated, one per AZ). */
  readonly appSubnets: ec2.SubnetSelection = { subnetGroupName: 'app' };
  /** Subnets of the Redis replication group (isolated, one per AZ). */
  readonly dataSubnets: ec2.SubnetSelection = { subnetGroupName: 'data' };

  constructor(scope: Construct, id: string, props: TallyNetworkProps = {}) {
    super(scope, id);

    this.vpc = new ec2.Vpc(this, 'Vpc', {
      ipAddresses: ec2.IpAddresses.cidr(props.cidr ?? '10.40.0.0/16'),
      maxAzs: props.maxAzs ?? 2,
      natGateways: 0,
      // The default security group gets no rules, so nothing attached to it by mistake is reachable.
      restrictDefaultSecurityGroup: true,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        { name: 'app', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 22 },
        { name: 'data', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 24 },
      ],
      gatewayEndpoints: {
        // Free; carries dnf (AL2023 repositories live in S3), the CodeDeploy agent installer
        // and the revision bundles from the pipeline's artifact bucket.
        S3: { service: ec2.GatewayVpcEndpointAwsService.S3 },
      },
    });

    const endpointSg = new ec2.SecurityGroup(this, 'EndpointSg', {
      vpc: this.vpc,
      description: 'Interface endpoints: HTTPS from inside the VPC',
      allowAllOutbound: false,
    });
    endpointSg.addIngressRule(
      ec2.Peer.ipv4(this.vpc.vpcCidrBlock),
      ec2.Port.tcp(443),
      'HTTPS from the VPC',
    );

    const services: Array<[string, ec2.InterfaceVpcEndpointAwsService]> = [
      ['Ssm', ec2.InterfaceVpcEndpointAwsService.SSM],
      ['SsmMessages', ec2.InterfaceVpcEndpointAwsService.SSM_MESSAGES],
      ['Ec2Messages', ec2.InterfaceVpcEndpointAwsService.EC2_MESSAGES],
      // The CloudWatch agent calls ec2:DescribeTags to learn its Auto Scaling group name.
      ['Ec2', ec2.InterfaceVpcEndpointAwsService.EC2],
      ['Logs', ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS],
      // The termination guard's heartbeats and CompleteLifecycleAction.
      ['AutoScaling', ec2.InterfaceVpcEndpointAwsService.AUTOSCALING],
      ['Monitoring', ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING],
      ['SecretsManager', ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER],
      ['CodeDeploy', ec2.InterfaceVpcEndpointAwsService.CODEDEPLOY],
      ['CodeDeployCommands', ec2.InterfaceVpcEndpointAwsService.CODEDEPLOY_COMMANDS_SECURE],
    ];
    for (const [name, service] of services) {
      this.vpc.addInterfaceEndpoint(`${name}Endpoint`, {
        service,
        subnets: this.appSubnets,
        securityGroups: [endpointSg],
        privateDnsEnabled: true,
      });
    }
  }
}
