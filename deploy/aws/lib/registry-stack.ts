/**
 * The image registry, in its own stack because it must exist (and hold an image) before the
 * service stack can start a task: deploy it, push, then deploy the service stack.
 * @module
 */
import { CfnOutput, aws_ecr as ecr, RemovalPolicy, Stack, type StackProps } from "aws-cdk-lib";
import type { Construct } from "constructs";
import type { Settings } from "./settings.ts";

export class RegistryStack extends Stack {
  readonly repository: ecr.Repository;

  constructor(scope: Construct, id: string, props: StackProps & { readonly settings: Settings }) {
    super(scope, id, props);
    this.repository = new ecr.Repository(this, "Repository", {
      repositoryName: props.settings.ecrRepository,
      // Tags name commits and are never moved: a deploy names exactly what it runs.
      imageTagMutability: ecr.TagMutability.IMMUTABLE,
      imageScanOnPush: true,
      encryption: ecr.RepositoryEncryption.AES_256,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [{ description: "keep the last 100 images", maxImageCount: 100 }],
    });
    new CfnOutput(this, "RepositoryUri", { value: this.repository.repositoryUri });
  }
}
