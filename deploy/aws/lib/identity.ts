/**
 * Client identity: a Cognito user pool (no self sign-up: game clients are provisioned by an
 * operator) and one app client, without a secret, that allows `ADMIN_USER_PASSWORD_AUTH` so that
 * `adsrv token` can mint test tokens with AdminInitiateAuth. Its issuer and client id configure
 * both API Gateway's JWT authorizer and adsrv's own verification (ADSRV_JWT_*).
 * @module
 */
import { aws_cognito as cognito, Duration, RemovalPolicy, Stack } from "aws-cdk-lib";
import { Construct } from "constructs";

export class Identity extends Construct {
  readonly userPool: cognito.UserPool;
  readonly client: cognito.UserPoolClient;
  /** `https://cognito-idp.REGION.amazonaws.com/POOL_ID`: the tokens' `iss`. */
  readonly issuer: string;
  readonly jwksUrl: string;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.userPool = new cognito.UserPool(this, "Users", {
      selfSignUpEnabled: false,
      signInAliases: { username: true },
      passwordPolicy: {
        minLength: 14,
        requireDigits: true,
        requireLowercase: true,
        requireUppercase: true,
        requireSymbols: false,
      },
      accountRecovery: cognito.AccountRecovery.NONE,
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.client = this.userPool.addClient("GameClient", {
      generateSecret: false,
      authFlows: { adminUserPassword: true },
      preventUserExistenceErrors: true,
      accessTokenValidity: Duration.hours(1),
      idTokenValidity: Duration.hours(1),
      refreshTokenValidity: Duration.days(30),
      enableTokenRevocation: true,
    });
    const region = Stack.of(this).region;
    this.issuer = `https://cognito-idp.${region}.amazonaws.com/${this.userPool.userPoolId}`;
    this.jwksUrl = `${this.issuer}/.well-known/jwks.json`;
  }
}
