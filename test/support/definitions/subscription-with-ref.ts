/**
 * The reference definition, also carrying `customer_ref`: a test makes a row poison by giving
 * it a customer_ref larger than a Kafka record may be, so its partition fails for good.
 */
import subscriptionVersion from '../../../examples/subscription-version.ts';

export default { ...subscriptionVersion, carry: ['product_version', 'customer_ref'] };
